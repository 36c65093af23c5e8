"""`crowdselect eval CONFIG.yaml [--out DIR] [key=value ...]`: evaluate a model — MT-bench with an LLM judge,
pairwise against a baseline (Arena-Hard-Auto's scoring, or FastChat pair-v2), and/or a judge-free proxy.

    # examples/eval.yaml
    model: {model: runs/train/model, backend: hf}    # FastChat's generation: 1024 tokens, category temperatures
    judge: {name: judge, model: pkg:smollm2-135m-instruct, kind: judge}
    # or judge_api: {model: deepseek-chat, base_url: https://api.deepseek.com/v1, api_key_env: DEEPSEEK_API_KEY}
    rating: judgment  # FastChat single-answer grading ([[N]]); logprob: probability-weighted (local judge)
    turns: 2

Steps, on Ray (local, or the cluster under `ray job submit`): questions -> answers (eval/answer.py) ->
judgments or logprob ratings (eval/judging.py) -> ratings read from the text (eval/verdicts.py) ->
pairwise (eval/pairwise_run.py) -> proxy (eval/proxy.py) -> summary.json, report.md, scores.png.
Writes to DIR: answers.jsonl (per turn: the answer, "ERROR" where it failed, and why), scores.jsonl (one row
per asked turn: score, judgment, error), pairwise_answers.jsonl, pairwise.jsonl, proxy.jsonl, summary.json
(with `completeness`: expected / answered / judged / unparseable / failed / usable), report.md, scores.png,
config.yaml (the resolved config), eval_state.json (the settings digest a rerun compares, eval/resume.py).
A failed or unparseable judgment is kept with its reason and counted, not in the means; a rerun with the same
settings asks again only the judge requests that failed.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from crowdselect.core import jsonout, storage
from crowdselect.core.config import to_dict
from crowdselect.core.paths import check_out_dir
from crowdselect.core.secrets import scrub_config
from crowdselect.core.text import printable
from crowdselect.eval import questions as mtbench
from crowdselect.eval.answer import AnswerGenerator, answer_or_keep
from crowdselect.eval.config import EvalConfig, EvalModelSpec, load_eval_config
from crowdselect.eval.judging import USER, logprob_ratings, write_judgments
from crowdselect.eval.resume import Previous, open_previous, write_rows
from crowdselect.eval.summary import judgment_records, logprob_records, summarize_mtbench

__all__ = ["AnswerGenerator", "EvalConfig", "EvalModelSpec", "load_eval_config", "main", "run_eval"]
log = logging.getLogger(__name__)


def judge_mtbench(cfg: EvalConfig, questions: list[dict[str, Any]], answered: list[dict[str, Any]],
                  kept: dict[tuple[Any, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One record per asked turn, in order; turn 2's prompt carries the question and answer of turn 1. The
    records in `kept` (an earlier run's judgments, same settings) are not asked again."""
    kept = kept or {}
    references = mtbench.load_reference_answers(cfg.reference_answers) if cfg.questions is None or \
        cfg.reference_answers else {}
    logprob = cfg.rating == "logprob"
    prompts = mtbench.load_judge_prompts(cfg.judge_prompts, for_logprob=logprob)
    rows = [row for q, a in zip(questions, answered, strict=True)
            for row in mtbench.judge_rows(q, a["answers"], a["turn_errors"], references, prompts, cfg.turns)]
    todo = [r for r in rows if (r["question_id"], r["turn"]) not in kept]
    if not todo:
        new = []
    elif logprob:
        new = logprob_records(logprob_ratings(cfg, todo))
    else:
        for r in todo:
            r[USER] = mtbench.render_prompt(r["judge_prompt"], r)
        new = judgment_records(write_judgments(cfg, todo))
    by_key = {**kept, **{(r["question_id"], r["turn"]): r for r in new}}
    return [by_key[(r["question_id"], r["turn"])] for r in rows]


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Answer, judge, compare, proxy; write the files; returns the summary. A rerun into the same folder with
    the same settings keeps what the last run answered and judged and asks only what failed (eval/resume.py)."""
    from crowdselect.runtime.cluster import plan_for_cluster
    from crowdselect.runtime.ray_setup import configure_data, ensure_ray

    questions = []  # read and checked before Ray starts: a bad questions file fails in a second
    if cfg.mtbench or (cfg.pairwise is not None and cfg.pairwise.questions is None):
        questions = mtbench.load_questions(cfg.questions, cfg.categories, cfg.limit, cfg.per_category)
    prev, note = open_previous(cfg)
    if note:
        log.info("eval: %s", note)
    ensure_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.temp_dir)
    cfg = plan_for_cluster(cfg)  # auto GPUs from the cluster, once; config.yaml records them
    configure_data(preserve_order=True)  # Ray Data's INFO lines and piped progress blocks only with --verbose
    summary: dict[str, Any] = {"model": cfg.model.name or cfg.model.model, "judge": cfg.judge_label,
                               "benchmark": "mt-bench" if cfg.questions is None else cfg.questions,
                               "turns": cfg.turns, "generation": generation_label(cfg.model)}
    files: dict[str, list[dict[str, Any]]] = {}
    answered = None
    if cfg.mtbench:
        log.info("eval: %d questions x %d turn(s) of %s", len(questions), cfg.turns, cfg.model.model)
        answered = answer_or_keep(cfg.model, questions, cfg.turns, prev.answers)
        files["answers.jsonl"] = [{"question_id": q["question_id"], "category": q["category"], "turns": q["turns"],
                                   "answers": a["answers"], "turn_errors": a["turn_errors"]}
                                  for q, a in zip(questions, answered, strict=True)]
        write_rows(cfg.out, "answers.jsonl", files["answers.jsonl"])  # kept if the judging is killed
        files["scores.jsonl"] = judge_mtbench(cfg, questions, answered, prev.scores)
        write_rows(cfg.out, "scores.jsonl", files["scores.jsonl"])
        summary.update(summarize_mtbench(files["scores.jsonl"]))
    if cfg.pairwise is not None:
        summary["pairwise"] = run_pairwise_files(cfg, questions, answered, prev, files)
    if cfg.proxy is not None:
        from crowdselect.eval.proxy import run_proxy

        files["proxy.jsonl"], summary["proxy"] = run_proxy(cfg)
    write_outputs(cfg, files, summary)
    return summary


def run_pairwise_files(cfg: EvalConfig, questions: list[dict[str, Any]], answered: list[dict[str, Any]] | None,
                       prev: Previous, files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    from crowdselect.eval.pairwise_run import run_pairwise

    files["pairwise_answers.jsonl"], files["pairwise.jsonl"], block = run_pairwise(cfg, questions, answered, prev)
    return block


def generation_label(spec: EvalModelSpec) -> dict[str, Any]:
    """How the answers were generated, for the report: temperature rule, token budget, seed."""
    return {"temperature": spec.temperature, "max_new_tokens": spec.max_new_tokens, "seed": spec.seed,
            "backend": spec.backend}


def write_outputs(cfg: EvalConfig, files: dict[str, list[dict[str, Any]]], summary: dict[str, Any]) -> None:
    from crowdselect.eval.report_md import render_plot, render_report

    out = cfg.out
    for name, rows in files.items():
        write_rows(out, name, rows)
    storage.write_text(storage.join(out, "summary.json"), jsonout.dumps(scrub_config(summary), indent=2) + "\n")
    storage.write_text(storage.join(out, "config.yaml"), yaml.safe_dump(scrub_config(to_dict(cfg)), sort_keys=False))
    storage.write_text(storage.join(out, "report.md"), render_report(summary))
    png = render_plot(summary)
    if png is not None:
        storage.write_bytes(storage.join(out, "scores.png"), png)


def headline(summary: dict[str, Any]) -> str:
    """One line of the results, for the terminal."""
    parts = []
    if "mean" in summary:
        parts.append(f"MT-bench mean {summary['mean']} over {summary['scored']} judged turns "
                     f"({summary['failed']} failed, {summary['unparseable']} unparseable, "
                     f"{summary['answer_errors']} answers failed)")
    if "pairwise" in summary:
        p = summary["pairwise"]
        parts.append(f"{p['mode']} win rate {p['win_rate']} [{p['ci95'][0]}, {p['ci95'][1]}] vs {p['baseline']}")
    if "proxy" in summary:
        parts.append(f"PROXY mean reward {summary['proxy']['mean_reward']}")
    return f"eval: {summary['model']}: " + "; ".join(parts)


def main(config_path: str, out: str | None = None, overrides: list[str] | None = None) -> int:
    """Entry of `crowdselect eval` and jobs/eval.py; ConfigError/UserError reach the CLI (exit 2)."""
    cfg = load_eval_config(config_path, out, overrides or [])
    check_out_dir(cfg.out)  # before any answer is generated
    summary = run_eval(cfg)
    print(printable(f"{headline(summary)}; judge {summary['judge']['name']}; results in {cfg.out}"))
    return 0
