"""Read a crowd pool (canonical, long or wide; JSONL or Parquet) into canonical rows on Ray Data.

`read_crowd(input_cfg, names, then=None)` returns one materialised Dataset where every input row is
accounted for: accepted rows have `error` null; rejected rows carry the reason, their `source` (FILE:LINE)
and the raw text. `n_rows` counts the input rows behind a row (1, or the lines of one id in a long table),
so accepted + rejected input rows == rows read. Duplicate ids keep their first occurrence (file order, then
line) and reject the later ones. Missing answers (crowd/parse.py) are counted per accepted row.

Passes over the data: one read + parse (+ `then`, fused into the same tasks, so the caller's per-row work
needs no pass of its own), materialised once; one pass that returns each block's counts and accepted ids
(duplicates are found on the driver); a third only when there are duplicate ids. Long tables add the
group-by-id merge.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from crowdselect.core import columns as C
from crowdselect.core import log, storage
from crowdselect.core.errors import UserError
from crowdselect.core.records import (
    FILE,
    LINE,
    display_path,
    iter_records,
    list_data_files,
    open_random_access,
    open_stream,
    split_by_kind,
)
from crowdselect.crowd.blocks import N_ROWS, RAW_LIMIT, SCHEMA, parse_block, rejected_row
from crowdselect.crowd.config import CROWD_SUFFIXES, InputConfig, WideLayout
from crowdselect.crowd.parse import (
    MISSING,
    CrowdRowError,
    detect_crowd_format,
    merge_long,
)
from crowdselect.crowd.ray_sources import (
    JsonLinesSource,
    ParquetRowsSource,
    json_line_blocks,
    parquet_row_blocks,
)
from crowdselect.crowd.wide import first_row, resolve_wide
from crowdselect.runtime.local_data import fetch, parallel_map, read_files
from crowdselect.runtime.rows import Rows, filter_rows

READ_CPUS = 0.25  # a read task splits lines (or yields Parquet batches); the parse tasks do the work
# a parse task leaves a read task room beside it: on 2 CPUs, 2 parse tasks and the read run together (with
# 1 CPU each, one parse task waits for the read to end: 1M canonical rows ingest ~20% slower)
PARSE_CPUS = 1 - READ_CPUS
READ_TASKS_MAX = 200  # Ray Data's own aim (DataContext.read_op_min_num_blocks): more files share a task
LOCAL_READERS = {JsonLinesSource: (json_line_blocks, open_stream), ParquetRowsSource: (parquet_row_blocks,
                                                                                       open_random_access)}
LOCAL_THREADS = min(4, os.cpu_count() or 1)  # in-process parse: Arrow's JSON reader and numpy release the GIL

__all__ = ["N_ROWS", "RAW_LIMIT", "SCHEMA", "Ingested", "IngestCounts", "accepted", "count_input_rows",
           "parse_block", "read_crowd", "rejected"]


@dataclass
class IngestCounts:
    accepted: int = 0  # instructions
    accepted_rows: int = 0  # input rows behind them
    rejected: int = 0  # rejected records
    rejected_rows: int = 0
    missing: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MISSING, 0))  # in accepted rows

    def add(self, other: IngestCounts) -> None:
        for k in ("accepted", "accepted_rows", "rejected", "rejected_rows"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k in MISSING:
            self.missing[k] += other.missing[k]


@dataclass
class Ingested:
    rows: Rows  # SCHEMA's bookkeeping columns (+ whatever `then` makes); accepted: error null
    format: str
    files: list[str]
    file_order: dict[str, int]  # displayed file name -> position in `files` (orders rows for reports)
    counts: IngestCounts = field(default_factory=IngestCounts)
    # wide tables: where each generator's answer and reward were read, {gen: {response: [col, field..], reward}}
    columns: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def merge_long_group(group: pa.Table, known: list[str], file_order: dict[str, int]) -> pa.Table:
    """All rows of one id in a long table -> one canonical row (or one rejection for the whole id)."""
    rows = group.to_pylist()
    parts = sorted(rows, key=lambda r: (file_order[r[FILE]], r[LINE]))
    first = parts[0]
    try:
        row = merge_long(parts, set(known))
        row.update({C.SOURCE: first[C.SOURCE], C.ERROR: None, C.RAW: None, N_ROWS: len(parts),
                    FILE: first[FILE], LINE: first[LINE]})
    except CrowdRowError as e:
        lines = ", ".join(str(p[LINE]) for p in parts)
        raw = json.dumps([{k: p[k] for k in (C.MODELS, C.REWARDS)} for p in parts])
        row = rejected_row(first[C.SOURCE], first[FILE], first[LINE], f"{e} (id '{first[C.ID]}', lines {lines})",
                           raw, n=len(parts))
    return pa.Table.from_pylist([row], schema=SCHEMA)


def resolve_format(cfg: InputConfig, files: list[str], generators: list[str]) -> tuple[str, WideLayout]:
    """The format of the files (cfg.input.format, or detected from the first readable row) and, for a wide
    table, `cfg.wide` resolved against the files' schemas (every file must map the same way)."""
    heads: dict[str, tuple] = {}  # each file's start is read once (a remote file: one round trip)

    def head(f: str) -> tuple:
        if f not in heads:
            heads[f] = first_row(f)
        return heads[f]

    fmt = cfg.format
    if fmt == "auto":
        first, _ = next(((r, c) for r, c in map(head, files) if r is not None), (None, None))
        if first is None:
            raise UserError(f"{display_path(files[0])}: cannot detect the pool format (no readable JSON "
                            "object in the first rows); set input.format")
        fmt = detect_crowd_format(first)
    if fmt != "wide":
        return fmt, cfg.wide
    layout, first_file = None, None
    for f in files:
        _, tree = head(f)
        if tree is None:
            continue
        this = resolve_wide(cfg.wide, tree, generators, display_path(f))
        if layout is None:
            layout, first_file = this, f
        elif this.paths != layout.paths:
            g = next(g for g in generators if this.paths[g] != layout.paths[g])
            raise UserError(f"{display_path(f)}: generator '{g}' reads from {'.'.join(this.paths[g][0])} here but "
                            f"from {'.'.join(layout.paths[g][0])} in {display_path(first_file)}: the files differ "
                            "in layout; read them separately")
    return fmt, layout or cfg.wide


def read_crowd(cfg: InputConfig, names: list[str],
               then: Callable[[pa.Table], pa.Table] | None = None, local: bool = False) -> Ingested:
    """Read, parse, merge (long), de-duplicate; every input row ends as accepted or rejected.

    `names`: the crowd's generator names, in config order (a model in the data that is not named is a bad row).
    `then` (optional) maps each block of SCHEMA rows to the caller's rows in the same tasks; it must keep
    id, instruction, source, error, raw, n_rows, _file, _line and the MISSING columns. `local`: in this
    process (`crowdselect.runtime.local_data`, blocks parsed on a few threads) instead of on Ray Data.
    """
    if not cfg.path:
        raise UserError("no input: give --input PATH or input.path in the config")
    listing = list_data_files(cfg.path, CROWD_SUFFIXES, what="crowd")
    files = listing.files
    if listing.skipped:
        log.say(f"input: {listing.skipped_message()}")
    fmt, layout = resolve_format(cfg, files, names)
    json_files, parquet_files = split_by_kind(files)
    parse = partial(parse_block, fmt=fmt, known=names, layout=layout)
    fused = then is not None and fmt != "long"  # a long table's rows are merged by id before `then`
    step = (lambda b: then(parse(b))) if fused else parse
    parts = []
    for source, group in ((JsonLinesSource, json_files), (ParquetRowsSource, parquet_files)):
        if group and local:
            parts.append(parallel_map(read_files(group, *LOCAL_READERS[source], cfg.lines_per_block), step,
                                      LOCAL_THREADS))
        elif group:
            for same in storage.by_scheme(group):  # one filesystem per datasource (hf:// is handed to Ray)
                # reads are not fused with the parse: a file is read by one task, its blocks parsed by many.
                # At most one read task per file, named: left to itself Ray Data aims at 200 blocks and splits
                # each task's blocks to get there (one file of 100K rows: 364 blocks of 275 rows, and every
                # pass over them 3x slower); a task's blocks are then up to DataContext.target_max_block_size
                raw = ray.data.read_datasource(source(same, lines_per_block=cfg.lines_per_block), num_cpus=READ_CPUS,
                                                override_num_blocks=min(len(same), READ_TASKS_MAX))
                parts.append(raw.map_batches(step, batch_format="pyarrow", batch_size=None, num_cpus=PARSE_CPUS))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    file_order = {display_path(f): i for i, f in enumerate(files)}
    if fmt == "long":
        ds = ds.materialize()
        # as many hash partitions as parsed blocks (Ray's default of 200 costs minutes on a small pool), and
        # at least two per CPU: the blocks are up to Ray's target block size, so a big pool has few of them
        cpus = 1 if local else int(ray.cluster_resources().get("CPU", 1))
        merged = accepted(ds).groupby(C.ID, num_partitions=max(1, ds.num_blocks(), 2 * cpus)).map_groups(
            merge_long_group, batch_format="pyarrow", fn_kwargs={"known": names, "file_order": file_order})
        ds = merged.sort(C.ID).union(rejected(ds))  # sorted: the row order after a shuffle is not fixed
    if then is not None and not fused:
        ds = ds.map_batches(then, batch_format="pyarrow", batch_size=None)
    ds = ds.materialize()
    counts, ids = block_stats(ds)
    dups = duplicate_ids(ids)
    if dups:
        ds = reject_duplicates(ds, dups, file_order, {display_path(f): f for f in files}).materialize()
        counts, _ = block_stats(ds)
    columns = {g: {"response": list(r), "reward": list(w)} for g, (r, w) in layout.paths.items()}
    return Ingested(ds, fmt, files, file_order, counts, columns)


def block_stats(ds: Rows) -> tuple[IngestCounts, pa.Array]:
    """Counts of a parsed dataset and the ids of its accepted rows (in block order), in one pass."""
    refs = ds.map_batches(_stats_block, batch_format="pyarrow", batch_size=None).to_arrow_refs()
    total, ids = IngestCounts(), []
    for t in fetch(refs):
        if t.num_rows == 0:  # an empty block (e.g. a hash partition no id fell into) may have no columns
            continue
        for r in t.drop_columns(["ids"]).to_pylist():
            total.add(IngestCounts(r["acc"], r["acc_rows"], r["rej"], r["rej_rows"], {m: r[m] for m in MISSING}))
        ids += [c.flatten() for c in t.column("ids").chunks]
    return total, pa.concat_arrays(ids) if ids else pa.array([], pa.string())


def _stats_block(batch: pa.Table) -> pa.Table:
    ok = pc.is_null(batch.column(C.ERROR))
    n = batch.column(N_ROWS)
    acc = pc.sum(pc.cast(ok, pa.int64())).as_py() or 0
    stats = {"acc": [acc], "acc_rows": [pc.sum(pc.if_else(ok, n, 0)).as_py() or 0],
             "rej": [batch.num_rows - acc], "rej_rows": [pc.sum(pc.if_else(ok, 0, n)).as_py() or 0]}
    for m in MISSING:
        stats[m] = [pc.sum(pc.if_else(ok, batch.column(m), 0)).as_py() or 0]
    ids = pc.cast(batch.column(C.ID).filter(ok), pa.string()).combine_chunks()
    stats["ids"] = pa.ListArray.from_arrays(pa.array([0, len(ids)], pa.int32()), ids)
    return pa.table(stats)


def duplicate_ids(ids: pa.Array) -> list[str]:
    """Ids that occur more than once (sorted); cheap when there are none (the usual case)."""
    if len(pc.unique(ids)) == len(ids):
        return []
    vc = pc.value_counts(ids)
    dup = vc.field("values").filter(pc.greater(vc.field("counts"), 1))
    return sorted(dup.to_pylist())


def reject_duplicates(ds: Rows, dup_ids: list[str], file_order: dict[str, int], paths: dict[str, str]) -> Rows:
    """Keep the first row of every id (file order, then line); later rows become 'duplicate id' rejections.

    paths: FILE (as rows show it) -> the path to read. A rejection keeps the row as it was written (answers
    included, at most RAW_LIMIT characters), read again from its file: the parsed rows no longer hold it.
    """
    dup_set = pa.array(dup_ids, pa.string())
    hits = filter_rows(ds, lambda b: pc.and_(pc.is_in(b[C.ID], value_set=dup_set), pc.is_null(b[C.ERROR]))
                       ).select_columns([C.ID, C.SOURCE, FILE, LINE]).take_all()
    first: dict[str, tuple] = {}
    for h in hits:
        key = (file_order[h[FILE]], h[LINE])
        if h[C.ID] not in first or key < first[h[C.ID]][0]:
            first[h[C.ID]] = (key, h[C.SOURCE])
    firsts = {k: v[1] for k, v in first.items()}
    keep = set(firsts.values())
    later: dict[str, set[int]] = {}
    for h in hits:
        if h[C.SOURCE] not in keep:
            later.setdefault(h[FILE], set()).add(h[LINE])
    originals = raw_rows(later, paths)

    def mark(batch: pa.Table) -> pa.Table:
        hit = pc.fill_null(pc.and_(pc.is_in(batch.column(C.ID), value_set=dup_set), pc.is_null(batch.column(C.ERROR))),
                           False).to_numpy(zero_copy_only=False)
        idx = [i for i in np.flatnonzero(hit) if batch.column(C.SOURCE)[int(i)].as_py() not in keep]
        if not idx:
            return batch
        errors = batch.column(C.ERROR).to_pylist()
        raws = batch.column(C.RAW).to_pylist()
        for i in idx:
            rid = batch.column(C.ID)[int(i)].as_py()
            errors[i] = f"duplicate id '{rid}' (first at {firsts[rid]})"
            raws[i] = originals.get(batch.column(C.SOURCE)[int(i)].as_py()) or json.dumps(
                {C.ID: rid, C.INSTRUCTION: batch.column(C.INSTRUCTION)[int(i)].as_py()})[:RAW_LIMIT]
        batch = batch.set_column(batch.schema.get_field_index(C.ERROR), C.ERROR, pa.array(errors, pa.string()))
        return batch.set_column(batch.schema.get_field_index(C.RAW), C.RAW, pa.array(raws, pa.string()))

    return ds.map_batches(mark, batch_format="pyarrow", batch_size=None)


def raw_rows(lines: dict[str, set[int]], paths: dict[str, str]) -> dict[str, str]:
    """FILE:LINE -> the row as written (at most RAW_LIMIT characters), for the given lines of each file
    (FILE as rows show it; `paths` maps it to the path to read). Each file is read up to its last wanted
    line, with the reader that made the rows, so the line numbers agree."""
    out = {}
    for file, wanted in lines.items():
        left = set(wanted)
        for rec in iter_records(paths[file]):
            if rec.line in left:
                out[f"{file}:{rec.line}"] = rec.raw[:RAW_LIMIT]
                left.discard(rec.line)
            if not left:
                break
    return out


def accepted(rows: Rows) -> Rows:
    return filter_rows(rows, lambda b: pc.is_null(b[C.ERROR]))


def rejected(rows: Rows) -> Rows:
    return filter_rows(rows, lambda b: pc.is_valid(b[C.ERROR]))


def count_input_rows(rows: Rows) -> IngestCounts:
    """Counts of a parsed dataset: accepted instructions and input rows, rejected records and input rows."""
    return block_stats(rows)[0]
