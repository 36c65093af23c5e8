"""The Ray Data sources of crowdselect.core.records on bad files, on a real local Ray: a truncated gzip, a
broken Parquet file and invalid UTF-8 become `_error` rows (and crowd rejects) instead of a failed read task
with a long Ray traceback."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from crowdselect.core.ray_sources import JsonLinesSource, ParquetRowsSource
from crowdselect.core.records import ERROR, FILE, LINE, TEXT
from crowdselect.crowd.config import InputConfig
from crowdselect.crowd.read import read_crowd, rejected

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
