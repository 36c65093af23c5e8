"""Read an instruction pool: plain instructions, ShareGPT, Alpaca or OpenAI `messages` rows.

Input: files (`.jsonl`, `.json`, `.txt`, `.parquet`, `.arrow`), directories of them (an HF-datasets
`save_to_disk` folder or a folder of shards), read in sorted order so ids and `FILE:LINE` are stable.
Output: rows `{id, instruction, source}` (see `crowdselect.core.columns`), where `source` is `FILE:LINE`
(LINE is 1-based: a line of a JSONL/TXT file, an element of a JSON list, a row of a Parquet/Arrow file).

Formats (`format: auto` decides per row from its keys):
- plain:    `{"instruction": ...}` (field name configurable) or one instruction per line of a `.txt` file
- sharegpt: `{"conversations": [{"from": "human", "value": ...}, ...]}`
- alpaca:   `{"instruction": ..., "input": ..., "output": ...}`; a non-empty `input` is appended after a
            blank line, as Alpaca's own prompt does
- messages: `{"messages": [{"role": "user", "content": ...}, ...]}`
For ShareGPT and messages the first user turn is the instruction; a system turn is ignored.

Ids: the row's id field when present, else a content hash of the instruction (the second copy of the
same text gets `#2` mixed in), so reruns and reorderings of the same file give the same ids.
A bad row (not JSON, no user turn, empty text, duplicate id) is `FILE:LINE: reason`; the caller either
fails on it (UserError) or keeps it in a rejects table. No row is dropped without being counted.
This module knows nothing of Ray or models.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError

FORMATS = ("auto", "plain", "sharegpt", "alpaca", "messages")
USER_ROLES = ("user", "human")
SUFFIXES = (".jsonl", ".json", ".txt", ".parquet", ".arrow")


@dataclass
class PoolRead:
    """What a pool read gave: accepted rows, rejected rows (`error`, `raw`, `source`), and the files."""

    rows: list[dict[str, str]]
    rejects: list[dict[str, str]]
    files: list[str]


class BadRow(ValueError):
    """A row that cannot be turned into an instruction; the message is the reason."""


def list_pool_files(paths: list[str]) -> list[str]:
    """Files of a pool in a stable order: each given file, or every data file under a given directory."""
    files: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.rglob("*") if f.suffix in SUFFIXES and f.is_file()
                           and f.name not in ("dataset_info.json", "state.json"))
            if not found:
                raise UserError(f"{p}: directory holds no pool files ({', '.join(SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(str(path))
        else:
            raise UserError(f"{p}: no such pool file or directory")
    return files


def iter_raw_rows(file: str) -> Iterator[tuple[int, Any, str]]:
    """(line number, parsed row or BadRow, raw text) for every row of one file."""
    suffix = Path(file).suffix
    if suffix in (".parquet", ".arrow"):
        yield from _iter_table(file)
        return
    with open(file, encoding="utf-8") as f:
        if suffix == ".json":
            yield from _iter_json_list(f.read(), file)
            return
        for n, line in enumerate(f, start=1):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            if suffix == ".txt":
                yield n, {"instruction": text}, text
                continue
            try:
                yield n, json.loads(text), text
            except json.JSONDecodeError as e:
                yield n, BadRow(f"not valid JSON ({e.msg} at column {e.colno})"), text


def _iter_json_list(text: str, file: str) -> Iterator[tuple[int, Any, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file}:{e.lineno}: not valid JSON ({e.msg}); a .json pool must be one JSON list") from None
    if not isinstance(data, list):
        raise UserError(f"{file}: a .json pool must hold a JSON list of rows, got {type(data).__name__}")
    for n, row in enumerate(data, start=1):
        yield n, row, json.dumps(row, ensure_ascii=False)[:2000]


def _iter_table(file: str) -> Iterator[tuple[int, Any, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file.endswith(".parquet"):
        batches = pq.ParquetFile(file).iter_batches(batch_size=4096)
    else:
        try:
            reader = pa.ipc.open_stream(file)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(file)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            batches = iter(reader)
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield n, row, json.dumps(row, ensure_ascii=False, default=str)[:2000]


def detect_format(row: dict) -> str:
    """The format of one row from its keys (used by `format: auto`)."""
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row:
        return "messages"
    if "input" in row and "instruction" in row:
        return "alpaca"
    return "plain"


def first_user_turn(turns: Any, role_key: str, text_key: str) -> str:
    """Text of the first user turn of a ShareGPT or messages list; BadRow when there is none."""
    if not isinstance(turns, list) or not turns:
        raise BadRow("conversation is empty or not a list")
    for turn in turns:
        if not isinstance(turn, dict):
            raise BadRow(f"conversation turn is not a mapping: {str(turn)[:60]!r}")
        if str(turn.get(role_key, "")).lower() in USER_ROLES:
            return _text(turn.get(text_key), f"{text_key} of the first user turn")
    raise BadRow("conversation has no user turn")


def _text(value: Any, what: str) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text parts
        value = "\n".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(value, str):
        raise BadRow(f"{what} is not text (got {type(value).__name__})")
    if not value.strip():
        raise BadRow(f"{what} is empty")
    return value


def extract_instruction(row: Any, fmt: str, instruction_field: str = "instruction") -> str:
    """The instruction of one parsed row in format `fmt` (not `auto`); raises BadRow with the reason."""
    if isinstance(row, BadRow):
        raise row
    if not isinstance(row, dict):
        raise BadRow(f"row is not a JSON object (got {type(row).__name__})")
    if fmt == "sharegpt":
        return first_user_turn(row.get("conversations"), "from", "value")
    if fmt == "messages":
        return first_user_turn(row.get("messages"), "role", "content")
    if instruction_field not in row:
        raise BadRow(f"missing field {instruction_field!r} (keys: {', '.join(sorted(map(str, row))) or 'none'})")
    text = _text(row[instruction_field], instruction_field)
    if fmt == "alpaca":
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise BadRow(f"input is not text (got {type(extra).__name__})")
        if extra and extra.strip():
            text = f"{text}\n\n{extra}"
    return text


def content_id(instruction: str, occurrence: int) -> str:
    """A stable id from the text: sha1 of the instruction (and its occurrence number after the first)."""
    key = instruction if occurrence == 1 else f"{instruction}#{occurrence}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def read_pool(paths: list[str], fmt: str = "auto", id_field: str | None = "id",
              instruction_field: str = "instruction", limit: int | None = None) -> PoolRead:
    """Read every row of the pool; accepted rows and rejected rows with `FILE:LINE` and reason."""
    if fmt not in FORMATS:
        raise UserError(f"pool format {fmt!r} unknown; choose one of {', '.join(FORMATS)}")
    files = list_pool_files(paths)
    rows: list[dict[str, str]] = []
    rejects: list[dict[str, str]] = []
    seen_ids: dict[str, str] = {}
    seen_text: dict[str, int] = {}
    root = os.path.commonpath([os.path.abspath(f) for f in files]) if len(files) > 1 else None
    for file in files:
        shown = os.path.relpath(file, root) if root else file
        for n, parsed, raw in iter_raw_rows(file):
            if limit is not None and len(rows) >= limit:
                return PoolRead(rows, rejects, files)
            source = f"{shown}:{n}"
            try:
                row_fmt = detect_format(parsed) if fmt == "auto" and isinstance(parsed, dict) else fmt
                text = extract_instruction(parsed, "plain" if row_fmt == "auto" else row_fmt, instruction_field)
                rid = _row_id(parsed, id_field, text, seen_text)
                if rid in seen_ids:
                    raise BadRow(f"duplicate id {rid!r} (first at {seen_ids[rid]})")
            except BadRow as e:
                rejects.append({C.SOURCE: source, C.ERROR: str(e), C.RAW: raw})
                continue
            seen_ids[rid] = source
            rows.append({C.ID: rid, C.INSTRUCTION: text, C.SOURCE: source})
    return PoolRead(rows, rejects, files)


def _row_id(row: Any, id_field: str | None, text: str, seen_text: dict[str, int]) -> str:
    if id_field and isinstance(row, dict) and row.get(id_field) not in (None, ""):
        value = row[id_field]
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise BadRow(f"{id_field} must be a string or integer, got {type(value).__name__}")
        return str(value)
    seen_text[text] = seen_text.get(text, 0) + 1
    return content_id(text, seen_text[text])


def check_rejects(read: PoolRead, on_bad_rows: str, show: int = 5) -> None:
    """With `on_bad_rows: fail`, raise a UserError naming the first bad rows (FILE:LINE: reason)."""
    if not read.rejects or on_bad_rows != "fail":
        return
    lines = [f"  {r[C.SOURCE]}: {r[C.ERROR]}" for r in read.rejects[:show]]
    more = len(read.rejects) - show
    tail = f"\n  ... and {more} more" if more > 0 else ""
    raise UserError(
        f"{len(read.rejects)} bad pool row(s):\n" + "\n".join(lines) + tail
        + "\n(set pool.on_bad_rows=quarantine to keep going and write them to ingest/rejects.parquet)"
    )
