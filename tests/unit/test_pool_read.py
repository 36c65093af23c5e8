"""Pool ingest (crowdselect.pool.read): every format, stable ids, bad rows named FILE:LINE with a reason."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.pool.read import check_rejects, content_id, read_pool


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_formats_give_the_first_user_turn(tmp_path):
    rows = [
        {"id": "p", "instruction": "plain one"},
        {"id": "a", "instruction": "Summarise", "input": "the text", "output": "x"},
        {"id": "s", "conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "hi"},
                                      {"from": "gpt", "value": "hello"}, {"from": "human", "value": "later"}]},
        {"id": "m", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "ask"},
                                 {"role": "assistant", "content": "ans"}]},
        {"id": "parts", "messages": [{"role": "user", "content": [{"type": "text", "text": "from parts"}]}]},
    ]
    got = read_pool([write_jsonl(tmp_path / "pool.jsonl", rows)])
    assert not got.rejects
    assert {r[C.ID]: r[C.INSTRUCTION] for r in got.rows} == {
        "p": "plain one", "a": "Summarise\n\nthe text", "s": "hi", "m": "ask", "parts": "from parts"}
    assert [r[C.SOURCE] for r in got.rows] == [f"{tmp_path / 'pool.jsonl'}:{i}" for i in range(1, 6)]


def test_txt_json_parquet_and_directories(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    (d / "a.txt").write_text("first line\n\nsecond line\n")
    (d / "b.json").write_text(json.dumps([{"instruction": "from json"}]))
    pq.write_table(pa.table({"id": ["q1"], "instruction": ["from parquet"]}), d / "c.parquet")
    got = read_pool([str(d)])
    assert [r[C.INSTRUCTION] for r in got.rows] == ["first line", "second line", "from json", "from parquet"]
    assert [r[C.SOURCE] for r in got.rows] == ["a.txt:1", "a.txt:3", "b.json:1", "c.parquet:1"]


def test_content_ids_are_stable_and_duplicates_distinct(tmp_path):
    rows = [{"instruction": "same"}, {"instruction": "other"}, {"instruction": "same"}]
    first = read_pool([write_jsonl(tmp_path / "p.jsonl", rows)]).rows
    again = read_pool([write_jsonl(tmp_path / "q.jsonl", rows)]).rows
    assert [r[C.ID] for r in first] == [r[C.ID] for r in again]
    assert first[0][C.ID] == content_id("same", 1) != first[2][C.ID] == content_id("same", 2)


def test_bad_rows_name_file_line_and_reason(tmp_path):
    rows = ['{"instruction": "ok"}', "{not json", {"conversations": [{"from": "gpt", "value": "only gpt"}]},
            {"messages": []}, {"instruction": "   "}, {"id": [1], "instruction": "x"}, {"text": "no field"},
            {"id": "d", "instruction": "a"}, {"id": "d", "instruction": "b"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    got = read_pool([path], fmt="auto")
    assert [r[C.INSTRUCTION] for r in got.rows] == ["ok", "a"]
    reasons = {r.source.rsplit(":", 1)[1]: r.reason for r in got.rejects}
    assert reasons["2"].startswith("not valid JSON")
    assert reasons["3"] == "conversation has no user turn"
    assert reasons["4"] == "conversation is empty or not a list"
    assert reasons["5"] == "instruction is empty"
    assert reasons["6"] == "id must be a string or integer, got list"
    assert reasons["7"].startswith("missing field 'instruction'")
    assert reasons["9"] == f"duplicate id 'd' (first at {path}:8)"
    assert len(got.rows) + len(got.rejects) == len(rows)  # every row accounted for
    with pytest.raises(UserError, match=r"7 bad pool row\(s\):\n  .*bad.jsonl:2: not valid JSON"):
        check_rejects(got, "fail")
    check_rejects(got, "quarantine")  # no raise: the caller writes the rejects file


def test_forced_format_rejects_rows_of_another_shape(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "plain"}])
    got = read_pool([path], fmt="sharegpt")
    assert not got.rows and got.rejects[0].reason == "conversation is empty or not a list"


def test_missing_path_and_limit(tmp_path):
    with pytest.raises(UserError, match="no such pool file"):
        read_pool([str(tmp_path / "nope.jsonl")])
    path = write_jsonl(tmp_path / "p.jsonl", [{"instruction": f"q{i}"} for i in range(5)])
    assert len(read_pool([path], limit=3).rows) == 3


def test_hf_datasets_save_to_disk_folder(tmp_path):
    """A `datasets.save_to_disk` folder: Arrow stream shards beside dataset_info.json and state.json."""
    d = tmp_path / "hf"
    d.mkdir()
    table = pa.table({"messages": [[{"role": "user", "content": "from arrow"}]], "id": ["h1"]})
    with pa.ipc.new_stream(d / "data-00000-of-00001.arrow", table.schema) as w:
        w.write_table(table)
    (d / "dataset_info.json").write_text("{}")
    (d / "state.json").write_text('{"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}')
    got = read_pool([str(d)])
    assert got.rows == [{C.ID: "h1", C.INSTRUCTION: "from arrow", C.SOURCE: f"{d}/data-00000-of-00001.arrow:1"}]


def test_an_instruction_of_invisible_characters_is_empty(tmp_path):
    """The rule of every reader (crowdselect.core.blank): zero-width and format characters are blank."""
    path = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "\u200b \ufeff\u2060"}, {"instruction": "\u200bok"}])
    got = read_pool([path], fmt="auto")
    assert [r[C.INSTRUCTION] for r in got.rows] == ["\u200bok"]
    assert [r.reason for r in got.rejects] == ["instruction is empty"]
