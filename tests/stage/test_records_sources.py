"""The Ray Data sources of crowdselect.core.records on bad files, on a real local Ray: a truncated gzip, a
broken Parquet file and invalid UTF-8 become `_error` rows (and crowd rejects) instead of a failed read task
with a long Ray traceback."""

import gzip
import json
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from bench import synthetic
from crowdselect.core.records import ERROR, FILE, LINE, TEXT
from crowdselect.crowd.config import InputConfig
from crowdselect.crowd.ray_sources import JsonLinesSource, ParquetRowsSource
from crowdselect.crowd.read import accepted, read_crowd, rejected

ROWS = [{"instruction": f"question number {i}, long enough to fill compressed blocks " * 3} for i in range(6000)]


def truncated_gzip(path):
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode())
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def invalid_utf8(path):
    path.write_bytes(b'{"instruction": "fine"}\n{"instruction": "caf\xe9 au lait"}\n{"instruction": "also fine"}\n')
    return str(path)


def test_json_lines_source_reads_a_truncated_gzip_to_an_error_row(ray_local, tmp_path):
    path = truncated_gzip(tmp_path / "c.jsonl.gz")
    rows = ray.data.read_datasource(JsonLinesSource([path], lines_per_block=500)).take_all()
    assert set(rows[0]) == {FILE, LINE, TEXT, ERROR}
    rows.sort(key=lambda r: r[LINE])
    bad = [r for r in rows if r[ERROR] is not None]
    assert len(bad) == 1 and bad[0] is rows[-1] and "Truncated compressed stream" in bad[0][ERROR]
    assert bad[0][TEXT] is None and [r[LINE] for r in rows] == list(range(1, len(rows) + 1))
    assert json.loads(rows[0][TEXT])["instruction"].startswith("question number 0,")


def test_parquet_source_reads_a_broken_file_to_an_error_row(ray_local, tmp_path):
    good, broken = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"id": ["x", "y"]}), good)
    broken.write_bytes(b"PAR1 this is not really parquet PAR1")
    rows = ray.data.read_datasource(ParquetRowsSource([str(good), str(broken)])).take_all()
    errors = [r for r in rows if r.get(ERROR)]
    assert len(rows) == 3 and [r[LINE] for r in errors] == [1]
    assert errors[0][FILE].endswith("b.parquet") and errors[0][ERROR].startswith("cannot read the parquet file (")


def test_crowd_read_turns_error_lines_into_rejects(ray_local, tmp_path):
    gz = truncated_gzip(tmp_path / "crowd.jsonl.gz")
    utf = invalid_utf8(tmp_path / "more.jsonl")
    ing = read_crowd(InputConfig(path=[gz, utf], format="canonical"), [])
    reasons = {r["source"]: r["error"] for r in rejected(ing.rows).take_all()}
    assert reasons[f"{utf}:2"] == "invalid UTF-8 at byte 21"
    cut = [s for s, e in reasons.items() if "Truncated compressed stream" in e]
    assert len(cut) == 1 and cut[0].startswith(f"{gz}:")


CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2)]


def crowd_rows(n, start):
    rows = synthetic.canonical_rows([f"Question {start + i}: {'why ' * (i + 3)}?" for i in range(n)], CROWD, seed=start)
    return [{**r, "id": f"q{start + i}"} for i, r in enumerate(rows)]


def awkward_crowd(d):
    """A folder of crowd files that each used to fail: a .json list, a BOM, a gzip cut inside its last row,
    a line nested 100,000 deep beside an invalid line. Returns (accepted ids, {source: reason})."""
    listed, bom, cut, deep = crowd_rows(7, 0), crowd_rows(5, 100), crowd_rows(12, 200), crowd_rows(3, 300)
    (d / "list.json").write_text(json.dumps(listed, indent=2))
    (d / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in bom).encode())
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in cut).encode())
    (d / "cut.jsonl.gz").write_bytes(data[:-60])
    whole = zlib.decompressobj(wbits=31).decompress(data[:-60]).count(b"\n")  # rows that decompress
    lines = [json.dumps(r) for r in deep] + ["[" * 100_000 + "]" * 100_000, '{"id": "x", "instruction": "\x01"}']
    (d / "deep.jsonl").write_text("\n".join(lines) + "\n")
    ids = [r["id"] for r in (*bom, *cut[:whole], *deep, *listed)]  # files in name order
    reasons = {f"{d}/cut.jsonl.gz:{whole + 1}": "corrupt or truncated file (Truncated compressed stream); nothing "
               "from here on is read", f"{d}/deep.jsonl:4": "invalid JSON (nested too deeply)",
               f"{d}/deep.jsonl:5": "invalid JSON (Invalid control character at column 29)"}
    return ids, reasons


@pytest.mark.parametrize("local", [False, True], ids=["ray", "local"])
def test_crowd_reader_reads_lists_boms_cut_gzips_and_deep_lines_on_both_executors(ray_local, tmp_path, local):
    """Format detection (auto) and the read of every file, on several blocks per file (3 rows a block)."""
    ids, reasons = awkward_crowd(tmp_path)
    gens = [name for name, _, _ in CROWD]
    ing = read_crowd(InputConfig(path=[str(tmp_path)], format="auto", lines_per_block=3), gens, local=local)
    assert ing.format == "canonical"
    assert [r["id"] for r in accepted(ing.rows).take_all()] == ids
    assert {r["source"]: r["error"] for r in rejected(ing.rows).take_all()} == reasons
    assert ing.counts.accepted_rows == len(ids) and ing.counts.rejected_rows == len(reasons)
    listed = [r["source"] for r in accepted(ing.rows).take_all() if "list.json" in r["source"]]
    assert listed == [f"{tmp_path}/list.json:{n}" for n in range(1, 8)]  # N is the element, not the text line
