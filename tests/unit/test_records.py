"""One records reader (crowdselect.core.records) under bad input: every fault is FILE[:LINE]: reason, never a
traceback or a silently changed row; folders keep only data files; one rejects format for every command.

The Ray Data sources meet the same files in tests/stage/test_records_sources.py. The bad files are made here: a gzip cut in half, a gzip with flipped bytes, a line with invalid UTF-8, an
empty file, a PNG and a NOTES.md beside the data.
"""

import gzip
import hashlib
import json
import warnings

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.core.errors import UserError
from crowdselect.core.records import iter_records, list_data_files
from crowdselect.core.rejects import bad_rows_policy
from crowdselect.crowd.config import InputConfig
from crowdselect.crowd.read import read_crowd
from crowdselect.pipeline.config import load_run_config
from crowdselect.pipeline.stages import ingest
from crowdselect.pool.read import check_rejects, read_pool
from crowdselect.train.data import read_conversations

ROWS = [{"instruction": f"question number {i}, long enough to fill compressed blocks " * 3} for i in range(6000)]


def jsonl_bytes(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def truncated_gzip(path):
    data = gzip.compress(jsonl_bytes(ROWS))
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def corrupted_gzip(path):
    data = bytearray(gzip.compress(jsonl_bytes(ROWS)))
    for i in range(200, 260):  # inside the first deflate block
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return str(path)


def invalid_utf8(path):
    path.write_bytes(b'{"instruction": "fine"}\n{"instruction": "caf\xe9 au lait"}\n{"instruction": "also fine"}\n')
    return str(path)


# ---- driver-side iterator and the readers that use it ------------------------------------------------------

def test_truncated_gzip_keeps_the_rows_before_and_names_the_line(tmp_path):
    path = truncated_gzip(tmp_path / "pool.jsonl.gz")
    records = list(iter_records(path))
    good, last = records[:-1], records[-1]
    assert good and all(r.error is None for r in good) and [r.line for r in good] == list(range(1, len(good) + 1))
    assert good[0].value == ROWS[0] and len(good) < len(ROWS)
    assert last.line == len(good) + 1 and last.value is None
    assert "Truncated compressed stream" in last.error
    got = read_pool([path])
    assert len(got.rows) == len(good) and [r.source for r in got.rejects] == [f"{path}:{last.line}"]
    with pytest.raises(UserError, match=rf"pool.jsonl.gz:{last.line}: corrupt or truncated file \(Truncated"):
        check_rejects(got, "fail")


def test_corrupted_gzip_is_a_named_row_error_for_pool_and_train(tmp_path):
    path = corrupted_gzip(tmp_path / "rows.jsonl.gz")
    got = read_pool([path])
    assert not got.rows and len(got.rejects) == 1
    assert got.rejects[0].source == f"{path}:1" and "(gzip data is corrupt: Error -3" in got.rejects[0].reason
    convs, bad = read_conversations([path])
    assert not convs and [(b.source, "gzip data is corrupt" in b.reason) for b in bad] == [(f"{path}:1", True)]


def test_invalid_utf8_is_a_reject_never_a_replacement_char(tmp_path):
    path = invalid_utf8(tmp_path / "p.jsonl")
    got = read_pool([path])
    assert [r["instruction"] for r in got.rows] == ["fine", "also fine"]
    assert "\ufffd" not in json.dumps(got.rows)
    assert [(r.source, r.reason) for r in got.rejects] == [(f"{path}:2", "invalid UTF-8 at byte 21")]
    assert got.rejects[0].raw == '{"instruction": "caf\ufffd au lait"}'  # the reject shows what was read
    _, bad = read_conversations([path])
    assert [(b.source, b.reason) for b in bad][0] == (f"{path}:1", "no 'output' (or 'response'): no assistant turn")
    assert (f"{path}:2", "invalid UTF-8 at byte 21") in [(b.source, b.reason) for b in bad]


def test_empty_file_says_so_for_pool_train_and_crowd(tmp_path):
    empty = tmp_path / "crowd.jsonl"
    empty.write_bytes(b"")
    for read in (lambda: read_pool([str(empty)]), lambda: read_conversations([str(empty)]),
                 lambda: read_crowd(InputConfig(path=[str(empty)]), [])):
        with pytest.raises(UserError, match=r"^.*crowd.jsonl: file is empty$"):
            read()


def test_data_folder_skips_png_and_notes_and_says_so(tmp_path):
    d = tmp_path / "data"
    (d / "shards").mkdir(parents=True)
    (d / "shards" / "a.jsonl").write_bytes(jsonl_bytes([{"instruction": "one", "output": "1"}]))
    (d / "b.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes([{"instruction": "two", "output": "2"}])))
    (d / "NOTES.md").write_text("# how this folder was made\n")
    (d / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (d / ".hidden.jsonl").write_text("{broken\n")  # hidden files are not data either, and are not listed
    listing = list_data_files([str(d)])
    assert listing.files == [str(d / "b.jsonl.gz"), str(d / "shards" / "a.jsonl")]
    assert listing.skipped_message() == f"skipped 2 non-data file(s) in {d}: NOTES.md, plot.png"
    pool = read_pool([str(d)])
    assert [r["instruction"] for r in pool.rows] == ["two", "one"] and not pool.rejects
    assert pool.skipped == listing.skipped_message()
    convs, bad = read_conversations([str(d)])  # train reads folders recursively too
    assert [c.messages[1]["content"] for c in convs] == ["2", "1"] and not bad
    with pytest.raises(UserError, match=r"data/\*\.\*: no crowd data files .*; skipped: NOTES.md, b.jsonl.gz, plot.png"):
        list_data_files([str(d / "*.*")], (".parquet",), what="crowd")


def test_explicitly_named_file_with_an_unknown_suffix_is_read_as_json_lines(tmp_path):
    path = tmp_path / "export.out"
    path.write_bytes(jsonl_bytes([{"instruction": "q", "output": "a"}]))
    assert [r.value for r in iter_records(str(path))] == [{"instruction": "q", "output": "a"}]
    assert list_data_files([str(path)]).files == [str(path)]


def test_train_folders_are_read_recursively(tmp_path):
    d = tmp_path / "sft"
    (d / "part1" / "deep").mkdir(parents=True)
    (d / "part1" / "deep" / "x.jsonl").write_bytes(jsonl_bytes([{"instruction": "deep", "output": "d"}]))
    (d / "top.jsonl").write_bytes(jsonl_bytes([{"instruction": "top", "output": "t"}]))
    convs, _ = read_conversations([str(d)])
    assert [c.source for c in convs] == [f"{d}/part1/deep/x.jsonl:1", f"{d}/top.jsonl:1"]


# ---- one rejects format, one policy name ----------------------------------------------------------------------

def test_policy_names_and_the_deprecated_skip():
    assert bad_rows_policy("fail") == "fail" and bad_rows_policy("quarantine") == "quarantine"
    with pytest.warns(FutureWarning, match="'skip' is deprecated, use 'quarantine'"):
        assert bad_rows_policy("skip") == "quarantine"
    with pytest.raises(ConfigError, match="on_bad_rows: must be one of fail, quarantine, got 'drop'"):
        bad_rows_policy("drop")


def test_run_and_train_write_the_same_rejects_file(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(b'{"instruction": "ok"}\n{nope\n{"instruction": "caf\xe9"}\n')
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(f"out: {tmp_path / 'run'}\npool: {{path: {pool}, on_bad_rows: skip}}\n"
                        "generators:\n  - {name: a, family: f, size_b: 1, model: m1}\n"
                        "  - {name: b, family: f, size_b: 2, model: m2}\n"
                        "rewards:\n  - {name: judge, model: j, kind: judge}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_run_config(str(cfg_path))
    assert cfg.pool.on_bad_rows == "quarantine" and any("deprecated" in str(w.message) for w in caught)
    ingest(cfg, cfg.out)
    run_rejects = [json.loads(x) for x in (tmp_path / "run" / "ingest" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["source"], r["reason"][:14]) for r in run_rejects] == [(f"{pool}:2", "not valid JSON"),
                                                                    (f"{pool}:3", "invalid UTF-8 ")]
    from crowdselect.core.rejects import write_rejects

    _, bad = read_conversations([str(pool)])
    write_rejects(bad, str(tmp_path / "train" / "rejected.jsonl"))
    train_rejects = [json.loads(x) for x in (tmp_path / "train" / "rejected.jsonl").read_text().splitlines()]
    assert {tuple(r) for r in run_rejects + train_rejects} == {("source", "reason", "raw")}


# ---- small faults that used to lose rows or stop the read ------------------------------------------------------

def test_a_small_truncated_gzip_keeps_every_row_before_the_cut(tmp_path):
    """A 12-row gzip cut inside its last row: the 11 rows before it are read (a failed 256 KiB read used to
    lose all of them) and the cut is one row error at line 12."""
    noise = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(96)]  # compresses to ~4 bits a char
    rows = [{"instruction": f"row {i} " + "".join(noise[8 * i: 8 * i + 8])} for i in range(12)]
    data = gzip.compress(jsonl_bytes(rows))
    path = tmp_path / "small.jsonl.gz"
    path.write_bytes(data[:-40])  # the 8-byte trailer and the end of the last row's deflate data
    records = list(iter_records(str(path)))
    assert [r.value for r in records[:-1]] == rows[:11]
    assert records[-1].line == 12 and "Truncated compressed stream" in records[-1].error
    path.write_bytes(data[:-4])  # only the trailer's size field is missing: every row is there
    records = list(iter_records(str(path)))
    assert [r.value for r in records[:-1]] == rows and records[-1].line == 13


def test_multi_member_gzip_and_bz2_are_read_whole(tmp_path):
    import bz2

    rows = [{"instruction": f"q{i}"} for i in range(4)]
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(jsonl_bytes(rows[:2])) + gzip.compress(jsonl_bytes(rows[2:])))
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress(jsonl_bytes(rows)))
    for name in ("m.jsonl.gz", "b.jsonl.bz2"):
        assert [r.value for r in iter_records(str(tmp_path / name))] == rows


def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path):
    bom = b"\xef\xbb\xbf"
    (tmp_path / "p.jsonl").write_bytes(bom + jsonl_bytes([{"instruction": "a"}, {"instruction": "b"}]))
    (tmp_path / "p.json").write_bytes(bom + json.dumps([{"instruction": "c"}]).encode())
    (tmp_path / "p.txt").write_bytes(bom + b"plain question\n")
    got = read_pool([str(tmp_path / n) for n in ("p.jsonl", "p.json", "p.txt")])
    assert [r["instruction"] for r in got.rows] == ["a", "b", "c", "plain question"] and not got.rejects


def test_deep_nesting_and_control_characters_are_row_errors(tmp_path):
    """A line nested 100,000 deep used to raise RecursionError out of the reader; JSON's own "... at" messages
    used to read "at at column"."""
    path = tmp_path / "p.jsonl"
    lines = ['{"instruction": "fine"}', "[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000,
             '{"instruction": "tab\there"}']
    path.write_text("\n".join(lines) + "\n")
    got = read_pool([str(path)])
    assert [r["instruction"] for r in got.rows] == ["fine"]
    assert [(r.source, r.reason) for r in got.rejects] == [
        (f"{path}:2", "not valid JSON (nested too deeply)"), (f"{path}:3", "not valid JSON (nested too deeply)"),
        (f"{path}:4", "not valid JSON (Invalid control character at column 21)")]


def test_a_json_list_is_read_element_by_element(tmp_path):
    """Rows of a .json list are numbered by element; an element nested too deeply spoils the whole list
    (it is parsed whole), and says so once."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"instruction": "a"}, {"instruction": "b"}], indent=2))
    assert [(r.line, r.value) for r in iter_records(str(path))] == [(1, {"instruction": "a"}), (2, {"instruction": "b"})]
    path.write_text("[" + "[" * 100_000 + "]" * 100_000 + "]")
    [rec] = list(iter_records(str(path)))
    assert rec.line == 1 and rec.error.startswith("not valid JSON (nested too deeply); a .json file holding a list")
