"""Read a crowd pool (canonical, long or wide; JSONL or Parquet) into canonical rows on Ray Data.

`read_crowd(input_cfg, generators)` returns one materialised Dataset where every input row is accounted for:
accepted rows have `error` null; rejected rows carry the reason, their `source` (FILE:LINE) and the raw
text. `n_rows` counts the input rows behind a row (1, or the lines of one id in a long table), so
accepted + rejected input rows == rows read. Duplicate ids keep their first occurrence (file order, then
line) and reject the later ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.expressions import col

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.errors import UserError
from crowdselect.core.ray_sources import JsonLinesSource, ParquetRowsSource
from crowdselect.core.records import (
    ERROR,
    FILE,
    JSON_SUFFIXES,
    LINE,
    READ_ERRORS,
    TEXT,
    display_path,
    first_record,
    list_data_files,
    split_by_kind,
)
from crowdselect.crowd.config import InputConfig, WideLayout
from crowdselect.crowd.parse import (
    RowError,
    detect_format,
    merge_long,
    parse_canonical,
    parse_long,
    parse_wide,
    wide_missing_columns,
    wide_unlisted_generators,
)
from crowdselect.generate.spec import GeneratorSpec

N_ROWS = "n_rows"
CROWD_SUFFIXES = (*JSON_SUFFIXES, ".parquet")
RAW_LIMIT = 2000  # characters of a rejected row kept in rejected.jsonl

SCHEMA = pa.schema([
    (C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.MODELS, pa.list_(pa.string())),
    (C.RESPONSES, pa.list_(pa.string())), (C.REWARDS, pa.list_(pa.float64())), (C.SOURCE, pa.string()),
    (C.ERROR, pa.string()), (C.RAW, pa.string()), (N_ROWS, pa.int64()), (FILE, pa.string()),
    (LINE, pa.int64()),
])


@dataclass
class Ingested:
    rows: ray.data.Dataset  # SCHEMA; accepted rows have error == null
    format: str
    files: list[str]
    file_order: dict[str, int]  # displayed file name -> position in `files` (orders rows for reports)


def _rejected(source: str, file: str, line: int, reason: str, raw: str, n: int = 1) -> dict:
    return {C.ID: None, C.INSTRUCTION: None, C.MODELS: None, C.RESPONSES: None, C.REWARDS: None,
            C.SOURCE: source, C.ERROR: reason, C.RAW: raw[:RAW_LIMIT], N_ROWS: n, FILE: file, LINE: line}


def parse_block(batch: pa.Table, fmt: str, known: list[str], layout: WideLayout) -> pa.Table:
    """A block of raw rows -> SCHEMA rows (canonical, partial long rows, or rejections)."""
    files = batch.column(FILE).to_pylist()
    lines = batch.column(LINE).to_pylist()
    errors = batch.column(ERROR).to_pylist() if ERROR in batch.column_names else [None] * len(files)
    if TEXT in batch.column_names:
        raws = batch.column(TEXT).to_pylist()
        objs = None
    else:
        objs = batch.drop_columns([c for c in (FILE, LINE, ERROR) if c in batch.column_names]).to_pylist()
        raws = None
    known_set = set(known)
    out = []
    for i, (file, line) in enumerate(zip(files, lines, strict=True)):
        source = f"{file}:{line}"
        raw = raws[i] if raws is not None else None
        try:
            if errors[i] is not None:  # a line the reader could not use (invalid UTF-8, corrupt file)
                raise RowError(errors[i])
            if objs is not None:
                obj = objs[i]
            else:
                try:
                    obj = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise RowError(f"invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise RowError(f"expected a JSON object, got {type(obj).__name__}")
            if fmt == "canonical":
                row = parse_canonical(obj, known_set)
            elif fmt == "long":
                row = parse_long(obj, known_set)
            else:
                row = parse_wide(obj, layout, known)
        except RowError as e:
            if raw is None:
                raw = json.dumps(objs[i], default=str) if objs is not None and errors[i] is None else ""
            out.append(_rejected(source, file, line, str(e), raw))
            continue
        row.update({C.SOURCE: source, C.ERROR: None, C.RAW: None, N_ROWS: 1, FILE: file, LINE: line})
        out.append(row)
    return pa.Table.from_pylist(out, schema=SCHEMA)


def merge_long_group(group: pa.Table, known: list[str], file_order: dict[str, int]) -> pa.Table:
    """All rows of one id in a long table -> one canonical row (or one rejection for the whole id)."""
    rows = group.to_pylist()
    parts = sorted(rows, key=lambda r: (file_order[r[FILE]], r[LINE]))
    first = parts[0]
    try:
        row = merge_long(parts, set(known))
        row.update({C.SOURCE: first[C.SOURCE], C.ERROR: None, C.RAW: None, N_ROWS: len(parts),
                    FILE: first[FILE], LINE: first[LINE]})
    except RowError as e:
        lines = ", ".join(str(p[LINE]) for p in parts)
        raw = json.dumps([{k: p[k] for k in (C.MODELS, C.REWARDS)} for p in parts])
        row = _rejected(first[C.SOURCE], first[FILE], first[LINE], f"{e} (id '{first[C.ID]}', lines {lines})",
                        raw, n=len(parts))
    return pa.Table.from_pylist([row], schema=SCHEMA)


def _first_record(path: str) -> tuple[dict | None, list[str]]:
    """(first row as a dict, column names) of a file, to detect the format and check wide columns."""
    if path.endswith(".parquet"):
        fs, p = storage.filesystem(path)
        try:
            with fs.open_input_file(p) as f:
                pf = pq.ParquetFile(f)
                names = pf.schema_arrow.names
                first = next(pf.iter_batches(batch_size=1), None)
        except READ_ERRORS:  # the reader reports the broken file as a row error
            return None, []
        return (first.to_pylist()[0] if first is not None and first.num_rows else None), names
    rec = first_record(path)
    obj = rec.value if rec is not None else None
    return (obj, list(obj)) if isinstance(obj, dict) else (None, [])


def resolve_format(cfg: InputConfig, files: list[str], generators: list[str]) -> str:
    fmt = cfg.format
    if fmt == "auto":
        first, _ = next(((r, c) for r, c in map(_first_record, files) if r is not None), (None, []))
        if first is None:
            raise UserError(f"{display_path(files[0])}: cannot detect the pool format (no readable JSON "
                            "object in the first rows); set input.format")
        fmt = detect_format(first)
    if fmt == "wide":
        for f in files:
            record, names = _first_record(f)
            if not names:
                continue
            missing = wide_missing_columns(names, cfg.wide, generators)
            if missing:
                raise UserError(f"{display_path(f)}: wide layout column '{missing[0]}' not found "
                                f"(input.wide maps generators to columns; columns here: {', '.join(names[:12])})")
            extra = wide_unlisted_generators(names, cfg.wide, generators)
            if extra:
                raise UserError(f"{display_path(f)}: column '{cfg.wide.response_column(extra[0])}' holds model "
                                f"'{extra[0]}', which the crowd config does not list (add it to generators, "
                                "or to input.wide.ignore)")
    return fmt


def read_crowd(cfg: InputConfig, generators: list[GeneratorSpec]) -> Ingested:
    """Read, parse, merge (long), de-duplicate; every input row ends as accepted or rejected."""
    if not cfg.path:
        raise UserError("no input: give --input PATH or input.path in the config")
    listing = list_data_files(cfg.path, CROWD_SUFFIXES, what="crowd")
    files = listing.files
    if listing.skipped:
        print(f"[crowdselect] input: {listing.skipped_message()}", file=sys.stderr, flush=True)
    names = [g.name for g in generators]
    fmt = resolve_format(cfg, files, names)
    json_files, parquet_files = split_by_kind(files)
    parts = []
    for source, group in ((JsonLinesSource, json_files), (ParquetRowsSource, parquet_files)):
        if group:
            raw = ray.data.read_datasource(source(group, lines_per_block=cfg.lines_per_block))
            parts.append(raw.map_batches(parse_block, batch_format="pyarrow", batch_size=None,
                                         fn_kwargs={"fmt": fmt, "known": names, "layout": cfg.wide}))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    file_order = {display_path(f): i for i, f in enumerate(files)}
    if fmt == "long":
        ds = ds.materialize()
        merged = accepted(ds).groupby(C.ID).map_groups(
            merge_long_group, batch_format="pyarrow", fn_kwargs={"known": names, "file_order": file_order})
        ds = merged.sort(C.ID).union(rejected(ds))  # sorted: the row order after a shuffle is not fixed
    else:
        ds = reject_duplicates(ds.materialize(), file_order)
    return Ingested(ds.materialize(), fmt, files, file_order)


def reject_duplicates(ds: ray.data.Dataset, file_order: dict[str, int]) -> ray.data.Dataset:
    """Keep the first row of every id (file order, then line); later rows become 'duplicate id' rejections."""
    counts = ds.select_columns([C.ID]).filter(expr=col(C.ID).is_not_null()).groupby(C.ID).count()
    dup_ids = {r[C.ID] for r in counts.filter(expr=col("count()") > 1).take_all()}
    if not dup_ids:
        return ds
    hits = ds.filter(expr=col(C.ID).is_in(sorted(dup_ids))).select_columns([C.ID, C.SOURCE, FILE, LINE]).take_all()
    first: dict[str, tuple] = {}
    for h in hits:
        key = (file_order[h[FILE]], h[LINE])
        if h[C.ID] not in first or key < first[h[C.ID]][0]:
            first[h[C.ID]] = (key, h[C.SOURCE])
    keep = {v[1] for v in first.values()}
    firsts = {k: v[1] for k, v in first.items()}

    def mark(batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for r in rows:
            if r[C.ID] in dup_ids and r[C.SOURCE] not in keep and r[C.ERROR] is None:
                raw = json.dumps({C.ID: r[C.ID], C.INSTRUCTION: r[C.INSTRUCTION]})
                r.update(_rejected(r[C.SOURCE], r[FILE], r[LINE],
                                   f"duplicate id '{r[C.ID]}' (first at {firsts[r[C.ID]]})", raw))
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    return ds.map_batches(mark, batch_format="pyarrow", batch_size=None)


def accepted(rows: ray.data.Dataset) -> ray.data.Dataset:
    return rows.filter(expr=col(C.ERROR).is_null())


def rejected(rows: ray.data.Dataset) -> ray.data.Dataset:
    return rows.filter(expr=col(C.ERROR).is_not_null())


def count_input_rows(rows: ray.data.Dataset) -> tuple[int, int, int, int]:
    """(accepted instructions, accepted input rows, rejected records, rejected input rows)."""
    stats = rows.map_batches(_count_block, batch_format="pyarrow", batch_size=None).take_all()
    acc = sum(s["acc"] for s in stats)
    acc_rows = sum(s["acc_rows"] for s in stats)
    rej = sum(s["rej"] for s in stats)
    rej_rows = sum(s["rej_rows"] for s in stats)
    return acc, acc_rows, rej, rej_rows


def _count_block(batch: pa.Table) -> pa.Table:
    ok = pc.is_null(batch.column(C.ERROR))
    n = batch.column(N_ROWS)
    acc_rows = pc.sum(pc.if_else(ok, n, 0)).as_py() or 0
    rej_rows = pc.sum(pc.if_else(ok, 0, n)).as_py() or 0
    acc = pc.sum(pc.cast(ok, pa.int64())).as_py() or 0
    return pa.table({"acc": [acc], "acc_rows": [acc_rows], "rej": [batch.num_rows - acc], "rej_rows": [rej_rows]})
