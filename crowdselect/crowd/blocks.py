"""Parse a block of raw crowd rows with Arrow's vectorised readers; the per-line parser only where needed.

`parse_block(batch, fmt, known, layout)` turns one block of a JsonLinesSource (`_file`, `_line`, `_text`,
optionally `_error`) or of a ParquetRowsSource (the file's columns + `_file`, `_line`) into SCHEMA rows:

1. read: pyarrow.json reads all the lines of a block at once with the format's schema; Parquet blocks are
   columnar already (their types are checked, then cast);
2. validate with Arrow compute: every row that could be a reject is flagged (a null or blank id or
   instruction, an unknown or repeated model, an infinite or out-of-range reward, fewer than 2 usable answers), and, in
   JSON, every row with a null response or reward (only the raw line tells a null from a missing key);
3. unflagged rows become canonical rows with no Python per row; flagged rows go through the per-line parser
   (crowd/parse.py), and so does every row of a block that Arrow cannot read (invalid JSON, a type that
   changes, a non-null `_error` from the reader). Reasons, FILE:LINE and counts are the per-line parser's.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from crowdselect.core import columns as C
from crowdselect.core.blank import blank_mask
from crowdselect.core.records import FILE, JSON_ERRORS, LINE, TEXT, json_reason
from crowdselect.crowd.config import WideLayout
from crowdselect.crowd.parse import (
    EMPTY_RESPONSE,
    MAX_REWARD,
    MISSING,
    NULL_RESPONSE,
    NULL_REWARD,
    CrowdRowError,
    parse_canonical,
    parse_long,
    parse_wide,
)

N_ROWS = "n_rows"
READ_ERROR = "_error"  # a reader's per-line problem (e.g. invalid UTF-8), null when the line is fine
RAW_LIMIT = 2000  # characters of a rejected row kept in rejected.jsonl

SCHEMA = pa.schema([
    (C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.MODELS, pa.list_(pa.string())),
    (C.RESPONSES, pa.list_(pa.string())), (C.REWARDS, pa.list_(pa.float64())), (C.SOURCE, pa.string()),
    (C.ERROR, pa.string()), (C.RAW, pa.string()), (N_ROWS, pa.int64()), (FILE, pa.string()),
    (LINE, pa.int64()), *((m, pa.int64()) for m in MISSING),
])
ANSWER = pa.struct([(C.MODEL, pa.string()), (C.RESPONSE, pa.string()), (C.REWARD, pa.float64())])


def rejected_row(source: str, file: str, line: int, reason: str, raw: str, n: int = 1) -> dict:
    return {C.ID: None, C.INSTRUCTION: None, C.MODELS: None, C.RESPONSES: None, C.REWARDS: None,
            C.SOURCE: source, C.ERROR: reason, C.RAW: raw[:RAW_LIMIT], N_ROWS: n, FILE: file, LINE: line,
            **dict.fromkeys(MISSING, 0)}


class _NeedsLines(Exception):
    """The block holds something only the per-line parser can describe."""


def parse_block(batch: pa.Table, fmt: str, known: list[str], layout: WideLayout) -> pa.Table:
    """A block of raw rows -> SCHEMA rows (canonical, partial long rows, or rejections), in input order."""
    n = batch.num_rows
    cols = None
    if n and not _has_read_errors(batch):
        cols = _read_json(batch, fmt, known, layout) if TEXT in batch.column_names else \
            _conform_parquet(batch, fmt, known, layout)
    if cols is None:
        return parse_lines(batch, np.arange(n), fmt, known, layout)
    # in JSON a null and an absent key read alike (the latter is an error): the per-line parser tells them
    # apart; in a wide table both mean "did not answer"
    ambiguous = TEXT in batch.column_names and fmt != "wide"
    try:
        flagged, fast = _vector_rows(cols, batch, fmt, known, ambiguous_nulls=ambiguous)
    except _NeedsLines:
        return parse_lines(batch, np.arange(n), fmt, known, layout)
    if not len(flagged):
        return fast
    slow = parse_lines(batch, flagged, fmt, known, layout)
    order = np.argsort(np.concatenate([np.flatnonzero(~np.isin(np.arange(n), flagged)), flagged]), kind="stable")
    return pa.concat_tables([fast, slow]).take(pa.array(order))


def _has_read_errors(batch: pa.Table) -> bool:
    return READ_ERROR in batch.column_names and batch.column(READ_ERROR).null_count < batch.num_rows


# -- 1. read ------------------------------------------------------------------------------------------------

def _schema(fmt: str, known: list[str], layout: WideLayout) -> pa.Schema:
    if fmt == "canonical":
        return pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.RESPONSES, pa.list_(ANSWER))])
    if fmt == "long":
        return pa.schema([(C.ID, pa.string()), (C.INSTRUCTION, pa.string()), (C.MODEL, pa.string()),
                          (C.RESPONSE, pa.string()), (C.REWARD, pa.float64())])
    tree: dict = {}  # the wide paths as nested structs: what pyarrow.json reads of a row, and nothing else
    for path, t in _wide_fields(known, layout):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node.setdefault(path[-1], t)
    return pa.schema(_struct_fields(tree))


def _struct_fields(tree: dict) -> list[tuple[str, pa.DataType]]:
    return [(k, pa.struct(_struct_fields(v)) if isinstance(v, dict) else v) for k, v in tree.items()]


def _wide_fields(known: list[str], layout: WideLayout) -> list[tuple[tuple[str, ...], pa.DataType]]:
    """(path, type) of id, instruction, then each generator's response and reward: the flat wide columns."""
    fields = [((layout.id,), pa.string()), ((layout.instruction,), pa.string())]
    for g in known:
        fields += [(layout.response_path(g), pa.string()), (layout.reward_path(g), pa.float64())]
    return fields


def _leaf(table: pa.Table, path: tuple[str, ...]) -> pa.ChunkedArray | None:
    """The values at `path` (null where a struct above them is null), or None when the types do not lead there."""
    if path[0] not in table.column_names:
        return None
    values = table.column(path[0])
    for key in path[1:]:
        index = values.type.get_field_index(key) if pa.types.is_struct(values.type) else -1
        if index < 0:
            return None
        values = pc.struct_field(values, [index])
    return values


def _flat_wide(table: pa.Table, known: list[str], layout: WideLayout) -> pa.Table | None:
    """A wide block as flat columns in `_wide_fields` order (what `_answers` indexes), or None."""
    cols = [_leaf(table, path) for path, _ in _wide_fields(known, layout)]
    if any(c is None for c in cols):
        return None
    return pa.table(cols, names=[str(i) for i in range(len(cols))])


def _read_json(batch: pa.Table, fmt: str, known: list[str], layout: WideLayout) -> pa.Table | None:
    """All lines of the block as one Arrow table with the format's columns, or None if Arrow cannot."""
    lines = batch.column(TEXT).combine_chunks()
    joined = pc.cast(pc.binary_join_element_wise(lines, pa.scalar(""), "\n"), pa.large_string())  # line+"\n"
    offsets = np.frombuffer(joined.buffers()[1], np.int64)[joined.offset: joined.offset + len(joined) + 1]
    data = joined.buffers()[2]
    buf = data[offsets[0]: offsets[-1]] if data is not None else pa.py_buffer(b"")
    longest = int(np.diff(offsets).max())
    opts = pj.ParseOptions(explicit_schema=_schema(fmt, known, layout), unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.BufferReader(buf), parse_options=opts,
                             read_options=pj.ReadOptions(block_size=max(1 << 22, 2 * longest), use_threads=False))
    except (pa.ArrowException, ValueError):
        return None  # some line is not JSON, or a value has another type: the per-line parser says which
    if table.num_rows != batch.num_rows:
        return None
    return _flat_wide(table, known, layout) if fmt == "wide" else table


def _string_like(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _number_like(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)


def _conform_parquet(batch: pa.Table, fmt: str, known: list[str], layout: WideLayout) -> pa.Table | None:
    """The block's columns cast to the format's schema; None when a type needs the per-line parser's say."""
    if fmt == "wide":
        flat = _flat_wide(batch, known, layout)
        if flat is None:
            return None
        schema = pa.schema([(name, t) for name, (_, t) in zip(flat.column_names, _wide_fields(known, layout),
                                                               strict=True)])
        source = flat
    else:
        schema, source = _schema(fmt, known, layout), batch
    out = []
    for f in schema:
        if f.name not in source.column_names:
            return None
        c = source.column(f.name)
        if f.name == schema[0].name:  # the id: text, or an integer turned into text (as the per-line parser)
            ok = _string_like(c.type) or pa.types.is_integer(c.type)
        elif f.type == pa.float64():
            ok = _number_like(c.type)
        elif f.type == pa.string():
            ok = _string_like(c.type)
        else:
            ok = _answers_like(c.type)
            if ok:
                c = pc.cast(c, pa.list_(ANSWER))
        if not ok:
            return None
        out.append(pc.cast(c, f.type))
    return pa.table(out, schema=schema)


def _answers_like(t: pa.DataType) -> bool:
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return False
    fields = {f.name: f.type for f in t.value_type}
    return list(fields) == [C.MODEL, C.RESPONSE, C.REWARD] and _string_like(fields[C.MODEL]) \
        and _string_like(fields[C.RESPONSE]) and _number_like(fields[C.REWARD])


# -- 2. validate and 3. build -----------------------------------------------------------------------------

def _answers(cols: pa.Table, fmt: str, known: list[str]):
    """Flat answers of every row, row-major: (row (m,), model, response, reward) as Arrow arrays."""
    n = cols.num_rows
    if fmt == "canonical":
        lists = cols.column(C.RESPONSES).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
        flat = lists.flatten()
        if flat.null_count:  # an answer that is not an object: the per-line parser names it
            raise _NeedsLines
        return np.repeat(np.arange(n), lengths), flat.field(C.MODEL), flat.field(C.RESPONSE), flat.field(C.REWARD)
    if fmt == "long":
        return (np.arange(n), cols.column(C.MODEL).combine_chunks(), cols.column(C.RESPONSE).combine_chunks(),
                cols.column(C.REWARD).combine_chunks())
    g = len(known)
    perm = pa.array((np.arange(n)[:, None] + np.arange(g)[None, :] * n).ravel())  # row-major from column-major
    resp = pa.concat_arrays([cols.column(2 + 2 * j).combine_chunks() for j in range(g)]).take(perm)
    rew = pa.concat_arrays([cols.column(3 + 2 * j).combine_chunks() for j in range(g)]).take(perm)
    models = pa.array(known, pa.string()).take(pa.array(np.tile(np.arange(g), n)))
    return np.repeat(np.arange(n), g), models, resp, rew


def _vector_rows(cols: pa.Table, batch: pa.Table, fmt: str, known: list[str], ambiguous_nulls: bool):
    """(indices of rows for the per-line parser, SCHEMA table of every other row)."""
    row, model, response, reward = _answers(cols, fmt, known)
    flag, kind = _classify(cols, row, model, response, reward, fmt, known, ambiguous_nulls)
    return np.flatnonzero(flag), _build(cols, batch, row, model, response, reward, flag, kind, fmt)


def _classify(cols, row, model, response, reward, fmt, known, ambiguous_nulls) -> tuple[np.ndarray, np.ndarray]:
    """(flag (n,): the row needs the per-line parser, kind (m,): 0 usable answer, else 1 + MISSING index)."""
    n = cols.num_rows
    flag = _blank(cols.column(0)) | _blank(cols.column(1))
    code = pc.fill_null(pc.index_in(model, value_set=pa.array(known, pa.string())), -1).to_numpy()
    flag |= np.bincount(row[code < 0], minlength=n) > 0  # null or unknown model
    pairs = np.bincount(row * len(known) + np.maximum(code, 0), minlength=n * len(known)).reshape(n, -1)
    flag |= (pairs > 1).any(axis=1)  # a model answers twice
    rew = pc.fill_null(reward, np.nan).to_numpy(zero_copy_only=False).astype(float)
    resp_null = pc.is_null(response).to_numpy(zero_copy_only=False)
    empty = pc.fill_null(blank_mask(response), False)
    kind = np.zeros(len(row), np.int8)  # the order of these lines is parse.missing_kind's precedence
    kind[np.isnan(rew)] = 1 + MISSING.index(NULL_REWARD)
    kind[empty.to_numpy(zero_copy_only=False)] = 1 + MISSING.index(EMPTY_RESPONSE)
    kind[resp_null] = 1 + MISSING.index(NULL_RESPONSE)
    with np.errstate(invalid="ignore"):
        suspect = np.abs(rew) > MAX_REWARD  # infinite or out of range (NaN is a missing reward)
    if ambiguous_nulls:
        suspect |= resp_null | pc.is_null(reward).to_numpy(zero_copy_only=False)
    flag |= np.bincount(row[suspect], minlength=n) > 0
    if fmt != "long":  # a long row is one answer of an id: missing answers are counted when ids merge
        flag |= np.bincount(row[kind == 0], minlength=n) < 2
    return flag, kind


def _build(cols, batch, row, model, response, reward, flag, kind, fmt) -> pa.Table:
    """SCHEMA rows of the unflagged rows, with their usable answers (long: the one answer, as is)."""
    n = cols.num_rows
    keep = np.flatnonzero(~flag)
    take = kind == 0 if fmt != "long" else np.ones(len(row), bool)
    ans = pa.array(np.flatnonzero(take & ~flag[row]))
    counts = np.bincount(row[ans.to_numpy()], minlength=n)[keep]
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    if fmt == "long":  # NaN is "no reward", as the per-line parser has it
        reward = pc.if_else(pc.is_nan(reward), pa.scalar(None, pa.float64()), reward)
    k = pa.array(keep)
    file, line = batch.column(FILE).take(k), batch.column(LINE).take(k)
    out = {
        C.ID: pc.cast(cols.column(0).take(k), pa.string()), C.INSTRUCTION: cols.column(1).take(k),
        C.MODELS: pa.ListArray.from_arrays(offsets, model.take(ans)),
        C.RESPONSES: pa.ListArray.from_arrays(offsets, response.take(ans)),
        C.REWARDS: pa.ListArray.from_arrays(offsets, pc.cast(reward, pa.float64()).take(ans)),
        C.SOURCE: pc.binary_join_element_wise(file, pc.cast(line, pa.string()), ":"),
        C.ERROR: pa.nulls(len(keep), pa.string()), C.RAW: pa.nulls(len(keep), pa.string()),
        N_ROWS: pa.array(np.ones(len(keep), np.int64)), FILE: file, LINE: line,
    }
    for j, m in enumerate(MISSING):
        out[m] = pa.array(np.bincount(row[kind == 1 + j], minlength=n)[keep] if fmt != "long"
                          else np.zeros(len(keep), np.int64))
    return pa.table(out, schema=SCHEMA)


def _blank(a: pa.ChunkedArray) -> np.ndarray:
    """Null, or blank text (`crowdselect.core.blank`: whitespace and invisible characters only; integers, as
    ids, are never blank)."""
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        return a.is_null().to_numpy(zero_copy_only=False)
    return pc.fill_null(blank_mask(a), True).to_numpy(zero_copy_only=False)


# -- the per-line parser --------------------------------------------------------------------------------------

def parse_lines(batch: pa.Table, rows: np.ndarray, fmt: str, known: list[str], layout: WideLayout) -> pa.Table:
    """Rows `rows` of a raw block, one at a time with crowd/parse.py -> SCHEMA rows (the reference path)."""
    sub = batch.take(pa.array(rows, pa.int64())) if len(rows) != batch.num_rows else batch
    files, lines = sub.column(FILE).to_pylist(), sub.column(LINE).to_pylist()
    errors = sub.column(READ_ERROR).to_pylist() if READ_ERROR in sub.column_names else [None] * len(files)
    if TEXT in sub.column_names:
        raws, objs = sub.column(TEXT).to_pylist(), None
    else:
        raws, objs = None, sub.drop_columns([c for c in (FILE, LINE, READ_ERROR) if c in sub.column_names]).to_pylist()
    known_set = set(known)
    out = []
    for i, (file, line) in enumerate(zip(files, lines, strict=True)):
        source = f"{file}:{line}"
        raw = raws[i] if raws is not None else None
        try:
            if errors[i] is not None:
                raise CrowdRowError(errors[i])
            obj = objs[i] if objs is not None else _loads(raw)
            if fmt == "canonical":
                row = parse_canonical(obj, known_set)
            elif fmt == "long":
                row = parse_long(obj, known_set)
            else:
                row = parse_wide(obj, layout, known)
        except CrowdRowError as e:
            if raw is None:  # a Parquet row as read, or nothing for a line the reader could not decode
                raw = json.dumps(objs[i], default=str) if objs is not None and errors[i] is None else ""
            out.append(rejected_row(source, file, line, str(e), raw))
            continue
        row.update({C.SOURCE: source, C.ERROR: None, C.RAW: None, N_ROWS: 1, FILE: file, LINE: line})
        out.append(row)
    return pa.Table.from_pylist(out, schema=SCHEMA)


def _loads(raw: str) -> dict:
    try:
        obj = json.loads(raw)
    except JSON_ERRORS as e:
        raise CrowdRowError(f"invalid JSON ({json_reason(e)})") from None
    if not isinstance(obj, dict):
        raise CrowdRowError(f"expected a JSON object, got {type(obj).__name__}")
    return obj
