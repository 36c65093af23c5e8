"""`crowdselect eval` question files: every fault is FILE:LINE: reason, exit 2, before Ray starts (no model)."""

import json

import pytest

from crowdselect import cli
from crowdselect.core.errors import UserError
from crowdselect.eval import questions as qs


def run_eval(tmp_path, lines, *extra):
    """`crowdselect eval` on a questions file of `lines` (dicts are written as JSON); returns (code, stderr)."""
    q = tmp_path / "q.jsonl"
    q.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: {{model: m}}\njudge: {{name: j, model: j, kind: judge}}\nquestions: {q}\n")
    code = cli.main(["eval", str(cfg), "--out", str(tmp_path / "o"), *extra])
    return code, q


def q(qid, category="writing", turns=("Write a poem.",)):
    return {"question_id": qid, "category": category, "turns": list(turns)}


def test_duplicate_question_id_names_file_line_and_id(tmp_path, capsys):
    code, path = run_eval(tmp_path, [q(1), q(2, "math"), q(1, "math")])
    assert code == 2
    assert f"{path}:3: duplicate question_id 1 (first at line 1)" in capsys.readouterr().err


@pytest.mark.parametrize("lines", [[], ["", "   "]], ids=["empty", "blank-lines"])
def test_a_file_without_questions_is_an_error(tmp_path, capsys, lines):
    code, path = run_eval(tmp_path, lines)
    assert code == 2 and f"{path}: no questions in the file" in capsys.readouterr().err


@pytest.mark.parametrize("row, reason", [
    ("not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object, got list"),
    ({"category": "writing", "turns": ["x"]}, "needs question_id"),
    ({"question_id": [1], "turns": ["x"]}, "question_id must be a number or a text, got [1]"),
    ({"question_id": 7, "category": "writing"}, "question 7: `turns` must be a non-empty list of non-empty texts"),
    (q(7, turns=()), "question 7: `turns` must be a non-empty list of non-empty texts"),
    (q(7, turns=("",)), "question 7: `turns` must be a non-empty list of non-empty texts"),
    (q(7, category=""), "question 7: category must be a non-empty text, got ''"),
    (q(7, category=5), "question 7: category must be a non-empty text, got 5"),
], ids=["not-json", "not-object", "no-id", "bad-id", "no-turns", "empty-turns", "blank-turn", "blank-category",
        "number-category"])
def test_question_faults_name_file_and_line(tmp_path, capsys, row, reason):
    code, path = run_eval(tmp_path, [q(1), row])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:2: {reason}" in err, err
    assert "Traceback" not in err


def test_unknown_category_filter_names_the_key_and_file(tmp_path, capsys):
    code, path = run_eval(tmp_path, [q(1), q(2, "math")], "categories=[math, poetry]")
    assert code == 2
    assert f"categories: no question of category 'poetry' in {path} (have: math, writing)" in capsys.readouterr().err


def test_duplicate_ids_in_baseline_answers_are_an_error(tmp_path):
    path = tmp_path / "answers.jsonl"
    rows = [{"question_id": 1, "choices": [{"turns": ["a"]}]}, {"question_id": 1, "choices": [{"turns": ["b"]}]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=rf"{path}:2: duplicate question_id 1 \(first at line 1\)"):
        qs.load_model_answers(str(path))
