"""Answering: the model under evaluation answers each question's turns, turn 2 seeing its own turn-1 answer.

As FastChat's gen_model_answer.py (lm-sys/FastChat, fastchat/llm_judge/): each question is answered at its
category's temperature (`temperature_config`, fastchat/llm_judge/common.py; an unknown category 0.7) unless
the config fixes one, and a turn whose generation fails answers "ERROR" — the conversation goes on with it,
so turn 2 is still asked, and the judge grades the "ERROR" answer. Here the failure is also recorded per
turn (`turn_errors`), so it is counted, never dropped.

`AnswerGenerator` is a Ray Data stage (model loaded in `__init__`); `generate_answers` wires it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from crowdselect.eval.config import EvalModelSpec
from crowdselect.runtime.lm.backend import load_causal_lm
from crowdselect.runtime.lm.batches import object_column, run_microbatches
from crowdselect.runtime.lm.chat import encode_chat

# lm-sys/FastChat fastchat/llm_judge/common.py `temperature_config`
FASTCHAT_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                        "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
UNKNOWN_CATEGORY_TEMPERATURE = 0.7  # gen_model_answer.py: a category not in temperature_config
FAILED_ANSWER = "ERROR"  # gen_model_answer.py: the answer of a turn whose generation failed


def text_or_none(value: Any) -> str | None:
    """An error cell as text; Ray Data turns an all-None column into NaN, which means no error."""
    return value if isinstance(value, str) else None


def temperature_for(spec: EvalModelSpec, category: str) -> float:
    """The sampling temperature of a question of `category`.

    >>> spec = EvalModelSpec(model="m")
    >>> [temperature_for(spec, c) for c in ("writing", "math", "stem", "held-out")]
    [0.7, 0.0, 0.1, 0.7]
    >>> temperature_for(EvalModelSpec(model="m", temperature=0.0), "writing")
    0.0
    """
    if spec.temperature != "fastchat":
        return float(spec.temperature)
    return FASTCHAT_TEMPERATURE.get(category, UNKNOWN_CATEGORY_TEMPERATURE)


def turn_errors(row: dict[str, Any]) -> list[str | None]:
    """The per-turn generation errors of an answered row (None where the turn was answered)."""
    return [text_or_none(e) for e in row["turn_errors"]]


class AnswerGenerator:
    """Ray Data stage: questions {question_id, category, turns: [str]} -> + answers (list[str], one per asked
    turn, "ERROR" where generation failed) and turn_errors (list: None or the reason, per turn).

    Turn t is generated with the conversation so far (user turns and the model's own earlier answers), with
    the model's chat template; the rows of a batch are generated together per turn and temperature.
    """

    def __init__(self, spec: EvalModelSpec, turns: int):
        self.spec, self.turns = spec, turns
        self.lm = load_causal_lm(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["question_id"])
        chats: list[list[dict[str, str]]] = [[] for _ in range(n)]
        answers: list[list[str]] = [[] for _ in range(n)]
        errors: list[list[str | None]] = [[] for _ in range(n)]
        for t in range(self.turns):
            by_temperature: dict[float, list[tuple[int, list[int]]]] = defaultdict(list)
            for i in range(n):
                qturns = list(batch["turns"][i])
                if t >= len(qturns):
                    continue
                chats[i].append({"role": "user", "content": str(qturns[t])})
                ids = encode_chat(self.lm.tokenizer, chats[i], add_generation_prompt=True)
                if len(ids) > self.spec.max_length:
                    self._record(chats[i], answers[i], errors[i], None,
                                 f"turn {t + 1}: conversation of {len(ids)} tokens > max_length {self.spec.max_length}")
                    continue
                by_temperature[temperature_for(self.spec, str(batch["category"][i]))].append((i, ids))
            for temperature, todo in sorted(by_temperature.items()):
                texts, errs = self._generate(todo, temperature)
                for (i, _), text, err in zip(todo, texts, errs, strict=True):
                    self._record(chats[i], answers[i], errors[i], text, None if err is None else f"turn {t + 1}: {err}")
        return {"question_id": batch["question_id"], "answers": object_column(answers),
                "turn_errors": object_column(errors)}

    def _generate(self, todo: list[tuple[int, list[int]]], temperature: float):
        s = self.spec
        prompts = [ids for _, ids in todo]
        batch = s.resources.batch_size
        return run_microbatches(prompts, [len(p) for p in prompts], batch, batch * (s.max_length + s.max_new_tokens),
                                lambda ps: self.lm.generate(ps, s.max_new_tokens, temperature, s.seed),
                                stage="answer")

    @staticmethod
    def _record(chat: list[dict[str, str]], answers: list[str], errors: list[str | None], text: str | None,
                error: str | None) -> None:
        """One turn's answer into the conversation: the text, or "ERROR" with the reason (FastChat's)."""
        answer = FAILED_ANSWER if error is not None or text is None else text.strip()
        answers.append(answer)
        errors.append(error)
        chat.append({"role": "assistant", "content": answer})


def answer_or_keep(s: EvalModelSpec, questions: list[dict[str, Any]], turns: int,
                   kept: dict[Any, dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers {question_id, category, answers, turn_errors} in question order: those in `kept` (an earlier
    run's, same settings) as they are, the others generated now."""
    new = {a["question_id"]: a for a in generate_answers(s, [q for q in questions if q["question_id"] not in kept],
                                                         turns)}
    out = []
    for q in questions:
        a = kept.get(q["question_id"]) or new[q["question_id"]]
        out.append({"question_id": q["question_id"], "category": q["category"], "answers": list(a["answers"]),
                    "turn_errors": list(a["turn_errors"])})
    return out


def generate_answers(s: EvalModelSpec, questions: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """Ray Data: the model's answers {question_id, answers, turn_errors}, in question order."""
    import ray
    from ray.data import ActorPoolStrategy

    from crowdselect.runtime.cluster import planned
    from crowdselect.runtime.resources import for_pool

    if not questions:
        return []
    s = planned(s)  # as `crowdselect eval` planned it, or for this machine
    res = for_pool(s.resources)
    ds = ray.data.from_items([{"question_id": q["question_id"], "category": q["category"], "turns": q["turns"]}
                              for q in questions])
    ds = ds.map_batches(AnswerGenerator, fn_constructor_kwargs={"spec": s, "turns": turns},
                        batch_size=s.resources.batch_size, compute=ActorPoolStrategy(size=s.resources.concurrency),
                        **res.replica_options())
    by_id = {r["question_id"]: r for r in ds.take_all()}
    return [{"question_id": q["question_id"], "answers": [str(x) for x in by_id[q["question_id"]]["answers"]],
             "turn_errors": turn_errors(by_id[q["question_id"]])} for q in questions]
