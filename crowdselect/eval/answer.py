"""Answering: the model under evaluation answers each question's turns, turn 2 seeing its own turn-1 answer.

`AnswerGenerator` is a Ray Data stage (model loaded in `__init__`); `generate_answers` wires it.
"""

from __future__ import annotations

from typing import Any

from crowdselect.eval.config import EvalModelSpec
from crowdselect.runtime.lm.backend import load_causal_lm
from crowdselect.runtime.lm.batches import object_column, run_microbatches
from crowdselect.runtime.lm.chat import encode_chat


def text_or_none(value: Any) -> str | None:
    """An error cell as text; Ray Data turns an all-None column into NaN, which means no error."""
    return value if isinstance(value, str) else None


class AnswerGenerator:
    """Ray Data stage: questions {question_id, turns: [str]} -> + answers (list[str]) and answer_error.

    Turn t is generated with the conversation so far (user turns and the model's own earlier answers),
    with the model's chat template; the rows of a batch are generated together per turn.
    """

    def __init__(self, spec: EvalModelSpec, turns: int):
        self.spec, self.turns = spec, turns
        self.lm = load_causal_lm(spec)

    def _generate(self, prompts: list[list[int]]) -> list[str]:
        return self.lm.generate(prompts, self.spec.max_new_tokens, self.spec.temperature, self.spec.seed)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n = len(batch["question_id"])
        chats: list[list[dict[str, str]]] = [[] for _ in range(n)]
        answers: list[list[str]] = [[] for _ in range(n)]
        errors: list[str | None] = [None] * n
        for t in range(self.turns):
            todo, prompts = [], []
            for i in range(n):
                qturns = list(batch["turns"][i])
                if errors[i] is not None or t >= len(qturns):
                    continue
                chats[i].append({"role": "user", "content": str(qturns[t])})
                ids = encode_chat(self.lm.tokenizer, chats[i], add_generation_prompt=True)
                if len(ids) > self.spec.max_length:
                    errors[i] = f"turn {t + 1}: conversation of {len(ids)} tokens > max_length {self.spec.max_length}"
                    continue
                todo.append(i)
                prompts.append(ids)
            texts, errs = run_microbatches(prompts, [len(p) for p in prompts], self.spec.resources.batch_size,
                                           self.spec.resources.batch_size * (self.spec.max_length + self.spec.max_new_tokens),
                                           self._generate, stage="answer")
            for i, text, err in zip(todo, texts, errs, strict=True):
                if err is not None:
                    errors[i] = f"turn {t + 1}: {err}"
                    continue
                answers[i].append(text.strip())
                chats[i].append({"role": "assistant", "content": text.strip()})
        return {"question_id": batch["question_id"], "answers": object_column(answers),
                "answer_error": object_column(errors)}


def generate_answers(s: EvalModelSpec, questions: list[dict[str, Any]], turns: int) -> list[dict[str, Any]]:
    """Ray Data: the model's answers {question_id, answers, answer_error}, in question order."""
    import ray
    from ray.data import ActorPoolStrategy

    from crowdselect.runtime.cluster import planned
    from crowdselect.runtime.resources import for_pool

    s = planned(s)  # as `crowdselect eval` planned it, or for this machine
    res = for_pool(s.resources)
    ds = ray.data.from_items([{"question_id": q["question_id"], "turns": q["turns"]} for q in questions])
    ds = ds.map_batches(AnswerGenerator, fn_constructor_kwargs={"spec": s, "turns": turns},
                        batch_size=s.resources.batch_size, compute=ActorPoolStrategy(size=s.resources.concurrency),
                        **res.remote_options())
    by_id = {r["question_id"]: r for r in ds.take_all()}
    return [by_id[q["question_id"]] for q in questions]
