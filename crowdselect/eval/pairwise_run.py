"""Wiring of the pairwise comparison: the student's and the baseline's first-turn answers, two A/B judgments
per question (positions swapped), the win rate with its bootstrap interval (crowdselect/eval/pairwise.py).

Prompts are FastChat's `pair-v2` (and `pair-math-v1` with the reference answer for math, reasoning and
coding). Returns the records (pairwise.jsonl) and the summary block (summary.json's `pairwise`).
"""

from __future__ import annotations

from typing import Any

from crowdselect.eval import questions as qs
from crowdselect.eval.answer import generate_answers, text_or_none
from crowdselect.eval.config import EvalConfig
from crowdselect.eval.judging import JUDGE_ERROR, JUDGMENT, SYSTEM, USER, write_judgments
from crowdselect.eval.pairwise import student_score, win_rate
from crowdselect.eval.verdicts import parse_verdict


def first_answers(answered: list[dict[str, Any]]) -> dict[Any, str | None]:
    """question_id -> the first-turn answer, or None when answering failed."""
    return {a["question_id"]: (str(a["answers"][0]) if len(a["answers"]) and text_or_none(a["answer_error"]) is None
                               else None) for a in answered}


def game_rows(question: dict[str, Any], student: str, baseline: str, references: dict[Any, list[str]],
              prompts: dict[bool, dict[str, str]]) -> list[dict[str, Any]]:
    """Game 1 (student = A) and game 2 (student = B) of one question, with the rendered judge prompts."""
    ref = qs.reference_for(question, references)
    p = prompts[ref is not None]
    rows = []
    for game, (a, b) in ((1, (student, baseline)), (2, (baseline, student))):
        fields = {"question": question["turns"][0], "answer_a": a, "answer_b": b,
                  "ref_answer_1": ref[0] if ref else ""}
        rows.append({"question_id": question["question_id"], "category": question["category"], "game": game,
                     SYSTEM: p["system"], USER: qs.render_prompt(p["prompt"], fields)})
    return rows


def run_pairwise(cfg: EvalConfig, mt_questions: list[dict[str, Any]],
                 student_answered: list[dict[str, Any]] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Answer (where not done yet), judge both games, score. Student answers to the MT-bench questions are
    reused when the pairwise questions are those."""
    pw = cfg.pairwise
    questions = qs.load_questions(pw.questions, limit=pw.limit) if pw.questions else mt_questions[:pw.limit]
    if pw.questions or student_answered is None:
        student_answered = generate_answers(cfg.model, questions, 1)
    student = first_answers(student_answered)
    if pw.baseline_answers:
        baseline = {k: v[0] if v else None for k, v in qs.load_model_answers(pw.baseline_answers).items()}
    else:
        baseline = first_answers(generate_answers(pw.baseline, questions, 1))
    references = qs.load_reference_answers(cfg.reference_answers) if pw.questions is None else {}
    prompts = qs.load_pair_prompts(cfg.judge_prompts)
    rows, missing = [], []
    for q in questions:
        s, b = student.get(q["question_id"]), baseline.get(q["question_id"])
        if s is None or b is None:
            missing.append(q["question_id"])
            continue
        rows += game_rows(q, s, b, references, prompts)
    records = [{"question_id": r["question_id"], "category": r["category"], "game": r["game"],
                "verdict": parse_verdict(text_or_none(r.get(JUDGMENT))), JUDGMENT: text_or_none(r.get(JUDGMENT)),
                "error": text_or_none(r.get(JUDGE_ERROR))} for r in write_judgments(cfg, rows)]
    for r in records:
        r["student_score"] = student_score(r["game"], r["verdict"])
    result = win_rate([(r["question_id"], r["game"], r["verdict"]) for r in records], pw.bootstrap, pw.seed)
    baseline_name = (pw.baseline.name or pw.baseline.model) if pw.baseline else pw.baseline_answers
    return records, {**result, "baseline": baseline_name, "unanswered_questions": missing,
                     "questions_file": pw.questions or "mt-bench (first turns)"}
