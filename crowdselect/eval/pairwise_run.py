"""Wiring of the pairwise comparison: the model's and the baseline's first-turn answers, two judged games per
question with the positions swapped, and the score of `pairwise.mode`:

    arena-hard  Arena-Hard-Auto's prompt and labels, a judgment without a label asked to go on (up to
                `attempts` replies), the Bradley-Terry win rate with a bootstrap over battles (eval/arena_hard.py)
    pair-v2     FastChat's `pair-v2` (`pair-math-v1` with the reference answer for math, reasoning and coding)
                and show_result.py's adjusted win rate (eval/pairwise.py)

An answer that failed to generate is judged as its "ERROR" text (FastChat's) and counted; a question the
baseline answer file lacks is counted and left out. Returns the answers (pairwise_answers.jsonl), one record
per game (pairwise.jsonl) and the summary block (summary.json's `pairwise`, with its `completeness`).
"""

from __future__ import annotations

from typing import Any

from crowdselect.eval import arena_hard
from crowdselect.eval import pairwise as pair_v2
from crowdselect.eval import questions as qs
from crowdselect.eval.answer import FAILED_ANSWER, answer_or_keep, text_or_none
from crowdselect.eval.config import EvalConfig
from crowdselect.eval.judging import FOLLOWUP, JUDGE_ERROR, JUDGMENT, PREVIOUS, SYSTEM, USER, write_judgments
from crowdselect.eval.resume import Previous
from crowdselect.eval.verdicts import parse_verdict


def first_turns(answered: list[dict[str, Any]]) -> dict[Any, tuple[str, str | None]]:
    """question_id -> (first-turn answer, its generation error or None)."""
    return {a["question_id"]: (a["answers"][0], a["turn_errors"][0]) for a in answered}


def pair_answers(cfg: EvalConfig, questions: list[dict[str, Any]], mt_answered: list[dict[str, Any]] | None,
                 prev: Previous) -> list[dict[str, Any]]:
    """{question_id, model, model_error, baseline, baseline_error} per question: the MT-bench answers when
    the questions are MT-bench's, an earlier run's (same settings), or generated now. A question the baseline
    file lacks has baseline None."""
    pw = cfg.pairwise
    kept = {qid: r for qid, r in prev.pair_answers.items()}
    model = first_turns(mt_answered) if mt_answered is not None and not pw.questions else first_turns(
        answer_or_keep(cfg.model, questions, 1, {q: _as_answer(r, "model") for q, r in kept.items()}))
    if pw.baseline_answers:
        from_file = qs.load_model_answers(pw.baseline_answers)
        baseline = {qid: (turns[0], None) for qid, turns in from_file.items() if turns}
    else:
        baseline = first_turns(answer_or_keep(pw.baseline, questions, 1,
                                              {q: _as_answer(r, "baseline") for q, r in kept.items()}))
    return [{"question_id": q["question_id"], "model": model[q["question_id"]][0],
             "model_error": model[q["question_id"]][1],
             "baseline": baseline.get(q["question_id"], (None, None))[0],
             "baseline_error": baseline.get(q["question_id"], (None, None))[1]} for q in questions]


def _as_answer(row: dict[str, Any], who: str) -> dict[str, Any]:
    return {"answers": [row[who] if row[who] is not None else FAILED_ANSWER], "turn_errors": [row[f"{who}_error"]]}


def game_rows(cfg: EvalConfig, question: dict[str, Any], answers: dict[str, Any],
              references: dict[Any, list[str]], prompts: dict[bool, dict[str, str]]) -> list[dict[str, Any]]:
    """The two games of one question with their judge prompts: arena-hard puts the baseline first (game 1:
    baseline = A), pair-v2 the model (game 1: model = A), as each project does."""
    arena = cfg.pairwise.mode == "arena-hard"
    rows = []
    for game in (1, 2):
        model_is_a = arena_hard.MODEL_IS_A[game] if arena else game == 1
        a, b = (answers["model"], answers["baseline"]) if model_is_a else (answers["baseline"], answers["model"])
        row = {"question_id": question["question_id"], "category": question["category"], "game": game,
               "model_is_a": model_is_a}
        if arena:
            row.update({SYSTEM: arena_hard.SYSTEM_PROMPT,
                        USER: arena_hard.user_prompt(question["turns"][0], a, b)})
        else:
            ref = qs.reference_for(question, references)
            p = prompts[ref is not None]
            fields = {"question": question["turns"][0], "answer_a": a, "answer_b": b,
                      "ref_answer_1": ref[0] if ref else ""}
            row.update({SYSTEM: p["system"], USER: qs.render_prompt(p["prompt"], fields)})
        rows.append(row)
    return rows


def judge_games(cfg: EvalConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per game {question_id, category, game, model_is_a, label, judgment, attempts, error}.
    arena-hard: a reply without a label is followed by arena_hard.CONTINUE, up to `attempts` replies."""
    arena = cfg.pairwise.mode == "arena-hard"
    replies: list[list[str]] = [[] for _ in rows]
    errors: list[str | None] = [None] * len(rows)
    todo = list(range(len(rows)))
    for attempt in range(cfg.pairwise.attempts if arena else 1):
        if not todo:
            break
        asked = [{**rows[i], **({PREVIOUS: replies[i], FOLLOWUP: arena_hard.CONTINUE} if attempt else {})}
                 for i in todo]
        again = []
        for i, r in zip(todo, write_judgments(cfg, asked), strict=True):
            errors[i] = text_or_none(r.get(JUDGE_ERROR))
            if errors[i] is None:
                replies[i].append(text_or_none(r.get(JUDGMENT)) or "")
                if arena and arena_hard.read_label("\n".join(replies[i]))[1]:
                    again.append(i)
        todo = again
    out = []
    for row, reply, error in zip(rows, replies, errors, strict=True):
        text = "\n".join(reply) if reply and error is None else None
        label = (arena_hard.read_label(text)[0] if arena else parse_verdict(text)) if text is not None else None
        out.append({k: row[k] for k in ("question_id", "category", "game", "model_is_a")} |
                   {"label": label, JUDGMENT: text, "attempts": len(reply), "error": error})
    return out


def run_pairwise(cfg: EvalConfig, mt_questions: list[dict[str, Any]], mt_answered: list[dict[str, Any]] | None,
                 prev: Previous) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Answer (what is not answered yet), judge both games (what was not judged yet), score."""
    pw = cfg.pairwise
    questions = qs.load_questions(pw.questions, limit=pw.limit) if pw.questions else mt_questions[:pw.limit]
    answers = pair_answers(cfg, questions, mt_answered, prev)
    references = qs.load_reference_answers(cfg.reference_answers) if pw.questions is None else {}
    prompts = qs.load_pair_prompts(cfg.judge_prompts) if pw.mode == "pair-v2" else {}
    rows = [row for q, a in zip(questions, answers, strict=True) if a["baseline"] is not None
            for row in game_rows(cfg, q, a, references, prompts)]
    todo = [r for r in rows if (r["question_id"], r["game"]) not in prev.games]
    judged = {(r["question_id"], r["game"]): r for r in judge_games(cfg, todo)} if todo else {}
    records = [prev.games.get((r["question_id"], r["game"])) or judged[(r["question_id"], r["game"])] for r in rows]
    return answers, records, summarize(cfg, answers, records)


def summarize(cfg: EvalConfig, answers: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The score of the mode, and what is behind it: failed games, answers that failed, missing baselines."""
    pw = cfg.pairwise
    games = [(r["question_id"], r["game"], r["label"]) for r in records]
    if pw.mode == "arena-hard":
        result = arena_hard.score(games, pw.weight, pw.bootstrap, pw.seed)
    else:
        result = pair_v2.score(games, pw.bootstrap, pw.seed)
    failed_q = {r["question_id"] for r in records if r["error"] is not None}
    unreadable_q = {r["question_id"] for r in records if r["error"] is None and r["label"] is None} - failed_q
    answered = [a for a in answers if a["model_error"] is None and a["baseline"] is not None
                and a["baseline_error"] is None]
    used_q = {r["question_id"] for r in records} - failed_q - unreadable_q
    usable = sum(a["question_id"] in used_q for a in answered)
    baseline = (pw.baseline.name or pw.baseline.model) if pw.baseline else pw.baseline_answers
    return {**result, "mode": pw.mode, "baseline": baseline, "failed_games": sum(r["error"] is not None for r in records),
            "model_answer_errors": sum(a["model_error"] is not None for a in answers),
            "baseline_answer_errors": sum(a["baseline_error"] is not None for a in answers),
            "no_baseline_answer": [a["question_id"] for a in answers if a["baseline"] is None],
            "weight": pw.weight if pw.mode == "arena-hard" else None, "bootstrap": pw.bootstrap,
            "questions_file": pw.questions or "mt-bench (first turns)",
            "completeness": {"expected": len(answers), "answered": len(answered), "judged": len(used_q),
                             "unparseable": len(unreadable_q), "failed": len(failed_q), "usable": usable}}
