"""Crowd rows: values that must be a named reject or a counted missing answer, and the vectorised block
parser, which must give exactly the per-line parser's rows (reasons, FILE:LINE, counts) on any block."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect.core import columns as C
from crowdselect.core.records import FILE, LINE, TEXT
from crowdselect.crowd.blocks import READ_ERROR, parse_block, parse_lines
from crowdselect.crowd.config import WideLayout
from crowdselect.crowd.parse import (
    EMPTY_RESPONSE,
    NULL_RESPONSE,
    NULL_REWARD,
    CrowdRowError,
    detect_crowd_format,
    merge_long,
    parse_canonical,
    parse_long,
    parse_wide,
)

KNOWN = ["a", "b", "c"]


def canon(*answers, id="x1", instruction="Why?"):
    return {"id": id, "instruction": instruction,
            "responses": [{"model": m, "response": r, "reward": w} for m, r, w in answers]}


@pytest.mark.parametrize("text", ["Infinity", "-Infinity", "1e400"])
def test_infinite_reward_is_a_named_reject(text):
    obj = json.loads(f'{{"id": "x", "instruction": "q", "responses": [{{"model": "a", "response": "r", '
                     f'"reward": {text}}}, {{"model": "b", "response": "s", "reward": 1}}, '
                     f'{{"model": "c", "response": "t", "reward": 2}}]}}')
    with pytest.raises(CrowdRowError, match="non-finite reward .*inf for model 'a'"):
        parse_canonical(obj, set(KNOWN))


@pytest.mark.parametrize("response", ["", "   \n\t"])
def test_empty_response_is_a_counted_missing_answer_never_the_best(response):
    row = parse_canonical(canon(("a", response, 9.0), ("b", "fine", 1.0), ("c", "ok", 2.0)), set(KNOWN))
    assert row[C.MODELS] == ["b", "c"] and row[C.RESPONSES] == ["fine", "ok"]
    assert (row[EMPTY_RESPONSE], row[NULL_RESPONSE], row[NULL_REWARD]) == (1, 0, 0)


def test_null_response_or_reward_is_a_missing_answer_in_canonical_as_in_wide():
    obj = canon(("a", None, None), ("b", "y", None), ("c", "z", 1.0))
    obj["responses"].append({"model": "d", "response": "w", "reward": 2.0})
    row = parse_canonical(obj, set(KNOWN) | {"d"})
    assert row[C.MODELS] == ["c", "d"] and row[C.REWARDS] == [1.0, 2.0]
    assert (row[NULL_RESPONSE], row[NULL_REWARD], row[EMPTY_RESPONSE]) == (1, 1, 0)
    layout = WideLayout()
    wide = {"id": "x1", "instruction": "Why?", "a_response": None, "a_reward": None, "b_response": "y",
            "b_reward": None, "c_response": "z", "c_reward": 1.0, "d_response": "w", "d_reward": 2.0}
    w = parse_wide(wide, layout, KNOWN + ["d"])
    assert {k: w[k] for k in row} == row


def test_a_missing_key_is_still_an_error_and_too_few_answers_say_why():
    obj = canon(("a", "r", 1.0), ("b", "s", 2.0))
    del obj["responses"][1]["reward"]
    with pytest.raises(CrowdRowError, match=r"missing field 'responses\[1\].reward'"):
        parse_canonical(obj, set(KNOWN))
    with pytest.raises(CrowdRowError, match=r"fewer than 2 answers with a reward \(1; missing answers: 1 null"):
        parse_canonical(canon(("a", None, None), ("b", "s", 2.0)), set(KNOWN))


def test_long_rows_with_a_null_answer_merge_into_counted_missing_answers():
    parts = [parse_long({"id": "x", "instruction": "q", "model": m, "response": r, "reward": w}, set(KNOWN))
             for m, r, w in (("a", None, None), ("b", "s", 2.0), ("c", "t", float("nan")))]
    parts.append(parse_long({"id": "x", "instruction": "q", "model": "d", "response": "u", "reward": 1.0},
                            set(KNOWN) | {"d"}))
    for i, p in enumerate(parts):
        p[C.SOURCE] = f"f:{i}"
    row = merge_long(parts, set(KNOWN) | {"d"})
    assert row[C.MODELS] == ["b", "d"] and (row[NULL_RESPONSE], row[NULL_REWARD]) == (1, 1)


def test_renamed_names():
    assert detect_crowd_format({"responses": []}) == "canonical"
    assert detect_crowd_format({"model": "a", "response": "r"}) == "long"
    assert detect_crowd_format({"a_response": "r"}) == "wide"


# -- the vectorised block parser against the per-line parser ------------------------------------------------

GOOD = [canon(("a", f"answer {i}", float(i)), ("b", "fine", 0.5 * i), ("c", "ok", -1.0), id=f"g{i}")
        for i in range(6)]
BAD_LINES = [
    '{"id": "j1", "instruction": ',  # invalid JSON
    json.dumps({"id": "m1", "responses": []}),  # missing instruction
    json.dumps(canon(("a", "r", "high"), ("b", "s", 1.0), id="r1")),  # non-numeric reward
    json.dumps(canon(("a", "r", 1.0), ("gpt-9", "s", 1.0), id="u1")),  # unknown model
    json.dumps(canon(("a", "r", 1.0), ("a", "s", 2.0), id="t1")),  # answers twice
    json.dumps(canon(("a", "r", 1.0), id="o1")),  # one answer
    '{"id": "i1", "instruction": "q", "responses": [{"model": "a", "response": "r", "reward": Infinity}, '
    '{"model": "b", "response": "s", "reward": 1}]}',
    '{"id": "e1", "instruction": "q", "responses": [{"model": "a", "response": "r", "reward": 1e400}, '
    '{"model": "b", "response": "s", "reward": 1}, {"model": "c", "response": "t", "reward": 2}]}',
    json.dumps(canon(("a", "", 5.0), ("b", "s", 1.0), ("c", "t", 2.0), id="p1")),  # empty: missing answer
    json.dumps(canon(("a", None, None), ("b", "s", 1.0), ("c", "t", 2.0), id="n1")),  # null: missing answer
    json.dumps({"id": "k1", "instruction": "q", "responses": [{"model": "a", "response": "r"},
                                                               {"model": "b", "response": "s", "reward": 1}]}),
    json.dumps({"id": 7, "instruction": "q", "responses": canon(("a", "r", 1), ("b", "s", 2))["responses"]}),
    json.dumps(canon(("a", "r", 1.0), ("b", "s", 2.0), id="  ")),  # blank id
    json.dumps(canon(("a", "r", 1.0), ("b", "s", 2.0), instruction=" ")),  # blank instruction
    "[1, 2]",
]


def line_block(lines, errors=None):
    cols = {FILE: pa.array(["f.jsonl"] * len(lines)), LINE: pa.array(range(1, len(lines) + 1), pa.int64()),
            TEXT: pa.array(lines)}
    if errors is not None:
        cols[READ_ERROR] = pa.array(errors, pa.string())
    return pa.table(cols)


def same(fast: pa.Table, ref: pa.Table):
    assert fast.schema == ref.schema
    assert fast.to_pylist() == ref.to_pylist()



def test_clean_block_is_parsed_without_the_per_line_parser_and_matches_it(per_line):
    block = line_block([json.dumps(r) for r in GOOD])
    fast = parse_block(block, "canonical", KNOWN, WideLayout())
    assert per_line == []
    same(fast, parse_lines(block, np.arange(block.num_rows), "canonical", KNOWN, WideLayout()))
    assert fast.column(C.SOURCE).to_pylist()[:2] == ["f.jsonl:1", "f.jsonl:2"]


@pytest.mark.parametrize("bad", range(len(BAD_LINES)))
def test_each_bad_line_gives_the_per_line_result(bad):
    lines = [json.dumps(r) for r in GOOD[:3]] + [BAD_LINES[bad]] + [json.dumps(r) for r in GOOD[3:]]
    block = line_block(lines)
    ref = parse_lines(block, np.arange(block.num_rows), "canonical", KNOWN, WideLayout())
    same(parse_block(block, "canonical", KNOWN, WideLayout()), ref)
    assert ref.num_rows == len(lines)


def test_reader_errors_become_rejects_with_their_reason():
    lines = [json.dumps(r) for r in GOOD]
    block = line_block(lines, [None, "invalid UTF-8 at byte 17", None, None, None, None])
    out = parse_block(block, "canonical", KNOWN, WideLayout()).to_pylist()
    assert [r[C.ERROR] for r in out] == [None, "invalid UTF-8 at byte 17", None, None, None, None]
    assert out[1][C.SOURCE] == "f.jsonl:2" and out[1][C.RAW] == lines[1]


def wide_table(rows):
    out = []
    for r in rows:
        w = {"id": r["id"], "instruction": r["instruction"]}
        for m in KNOWN:
            a = next((x for x in r["responses"] if x["model"] == m), None)
            w[f"{m}_response"] = a and a["response"]
            w[f"{m}_reward"] = a and a["reward"]
        out.append(w)
    return out


def parquet_block(tmp_path, rows):
    """A block as ParquetRowsSource makes it: the file's columns (as Parquet types them) + _file, _line."""
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "w.parquet")
    t = pq.read_table(tmp_path / "w.parquet")
    t = t.append_column(FILE, pa.array(["w.parquet"] * t.num_rows))
    return t.append_column(LINE, pa.array(range(1, t.num_rows + 1), pa.int64()))


def test_wide_parquet_with_missing_answers_and_bad_rows_matches_the_per_line_parser(tmp_path, per_line):
    rows = wide_table(GOOD)
    rows[1]["a_response"] = None  # did not answer: counted
    rows[2]["b_response"] = "  "  # empty: counted
    rows[3]["c_reward"] = None  # no reward: counted
    rows[4]["a_reward"] = float("inf")  # reject
    rows[5]["b_response"], rows[5]["c_response"] = None, None  # one answer left: reject
    block = parquet_block(tmp_path, rows)
    fast = parse_block(block, "wide", KNOWN, WideLayout())
    assert per_line == [5, 6]  # only the rows that are rejects go through the per-line parser
    same(fast, parse_lines(block, np.arange(block.num_rows), "wide", KNOWN, WideLayout()))
    errors = fast.column(C.ERROR).to_pylist()
    assert errors[:4] == [None] * 4 and "non-finite" in errors[4] and "fewer than 2" in errors[5]
    assert [fast.column(m).to_pylist()[:4] for m in (NULL_RESPONSE, EMPTY_RESPONSE, NULL_REWARD)] == \
        [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_canonical_parquet_and_long_jsonl_match_the_per_line_parser(tmp_path):
    rows = [dict(r) for r in GOOD]
    rows[2] = canon(("a", None, None), ("b", "s", 1.0), ("c", "t", 2.0), id="n1")
    block = parquet_block(tmp_path, rows)
    fast = parse_block(block, "canonical", KNOWN, WideLayout())
    same(fast, parse_lines(block, np.arange(block.num_rows), "canonical", KNOWN, WideLayout()))
    assert fast.column(NULL_RESPONSE).to_pylist()[2] == 1
    long = [{"id": r["id"], "instruction": r["instruction"], **a} for r in GOOD for a in r["responses"]]
    long[4]["model"] = "zz"
    block = line_block([json.dumps(x) for x in long])
    same(parse_block(block, "long", KNOWN, WideLayout()),
         parse_lines(block, np.arange(block.num_rows), "long", KNOWN, WideLayout()))


# -- rewards beyond the bound, and invisible text: both parsers, the same answer ----------------------------

INVISIBLE = ["\u200b", "\u200b \ufeff\u2060", "\u200c\u200d", "\t\u00a0\u3000"]


def both(lines):
    """(vectorised, per-line) results of the same JSON lines; they must be equal."""
    block = line_block(lines)
    fast = parse_block(block, "canonical", KNOWN, WideLayout())
    same(fast, parse_lines(block, np.arange(block.num_rows), "canonical", KNOWN, WideLayout()))
    return fast.to_pylist()


@pytest.mark.parametrize("reward", [1.7e308, -1.7e308, 1.0001e50])
def test_a_reward_beyond_the_bound_is_a_named_reject_in_both_parsers(reward):
    """Finite but huge rewards made the variance and the summary's moments overflow (inf/NaN, then a crash
    after the outputs were written): such a row is a reject, FILE:LINE: reason."""
    rows = both([json.dumps(r) for r in GOOD[:3]] + [json.dumps(canon(("a", "r", reward), ("b", "s", 1.0),
                                                                      ("c", "t", 2.0), id="h1"))])
    assert [r[C.ERROR] for r in rows[:3]] == [None] * 3
    assert rows[3][C.ERROR] == f"reward out of range {reward:.4g} for model 'a' (beyond +-1e+50)"
    assert rows[3][C.SOURCE] == "f.jsonl:4"


def test_a_reward_at_the_bound_is_accepted():
    rows = both([json.dumps(canon(("a", "r", -1e50), ("b", "s", 1e50), id="h1"))])
    assert rows[0][C.ERROR] is None and rows[0][C.REWARDS] == [-1e50, 1e50]


@pytest.mark.parametrize("text", INVISIBLE)
def test_an_invisible_answer_is_an_empty_answer_in_both_parsers(text):
    """A zero-width-space answer counted as an answer and, with the top reward, was chosen as the best."""
    rows = both([json.dumps(canon(("a", text, 99.0), ("b", "fine", 1.0), ("c", "ok", 2.0), id="z1"))])
    assert rows[0][C.ERROR] is None and rows[0][C.MODELS] == ["b", "c"]
    assert (rows[0][EMPTY_RESPONSE], rows[0][NULL_RESPONSE], rows[0][NULL_REWARD]) == (1, 0, 0)


@pytest.mark.parametrize("text", INVISIBLE)
def test_an_invisible_id_or_instruction_is_blank_in_both_parsers(text):
    rows = both([json.dumps(canon(("a", "r", 1.0), ("b", "s", 2.0), id=text)),
                 json.dumps(canon(("a", "r", 1.0), ("b", "s", 2.0), instruction=text))])
    assert rows[0][C.ERROR].startswith("field 'id' must be a non-empty string")
    assert rows[1][C.ERROR] == "field 'instruction' is empty"


def test_visible_text_around_invisible_characters_is_kept():
    rows = both([json.dumps(canon(("a", "\u200bok\u200b", 1.0), ("b", "s", 2.0), id="\ufeffv1"))])
    assert rows[0][C.ERROR] is None and rows[0][C.RESPONSES] == ["\u200bok\u200b", "s"]
