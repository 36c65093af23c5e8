"""Read an instruction pool: plain instructions, ShareGPT, Alpaca or OpenAI `messages` rows.

Input: files (`.jsonl`, `.json`, `.ndjson`, `.txt`, `.parquet`, `.arrow`; line formats also `.gz .zst .bz2`),
directories of them (an HF-datasets `save_to_disk` folder or a folder of shards), globs, s3:// gs:// hf:// URIs,
read in sorted order so ids and `FILE:LINE` are stable; files and faults as in `crowdselect.core.records`
(non-data files of a folder are skipped and named in `PoolRead.skipped`).
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
fails on it (UserError) or writes it to rejected.jsonl. No row is dropped without being counted.
This module knows nothing of Ray or models.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.blank import is_blank
from crowdselect.core.errors import UserError
from crowdselect.core.records import Listing, iter_records, kind_of, list_data_files
from crowdselect.core.rejects import BadRecord, Reject, fail_on_rejects

FORMATS = ("auto", "plain", "sharegpt", "alpaca", "messages")
USER_ROLES = ("user", "human")
SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt", ".parquet", ".arrow")


@dataclass
class PoolRead:
    """What a pool read gave: accepted rows, rejected rows, the files read and what the listing skipped."""

    rows: list[dict[str, str]]
    rejects: list[Reject]
    files: list[str]
    skipped: str | None = None  # "skipped 2 non-data file(s) in data/: NOTES.md, plot.png"


def list_pool_files(paths: list[str]) -> Listing:
    """Files of a pool in a stable order: each given file, or every data file under a given directory
    (local or s3:// gs://); see `crowdselect.core.records.list_data_files`."""
    return list_data_files(paths, SUFFIXES, what="pool")


def detect_pool_format(row: dict) -> str:
    """The format of one row from its keys (used by `format: auto`)."""
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row:
        return "messages"
    if "input" in row and "instruction" in row:
        return "alpaca"
    return "plain"


def first_user_turn(turns: Any, role_key: str, text_key: str) -> str:
    """Text of the first user turn of a ShareGPT or messages list; BadRecord when there is none."""
    if not isinstance(turns, list) or not turns:
        raise BadRecord("conversation is empty or not a list")
    for turn in turns:
        if not isinstance(turn, dict):
            raise BadRecord(f"conversation turn is not a mapping: {str(turn)[:60]!r}")
        if str(turn.get(role_key, "")).lower() in USER_ROLES:
            return _text(turn.get(text_key), f"{text_key} of the first user turn")
    raise BadRecord("conversation has no user turn")


def _text(value: Any, what: str) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text parts
        value = "\n".join(p.get("text", "") for p in value if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(value, str):
        raise BadRecord(f"{what} is not text (got {type(value).__name__})")
    if is_blank(value):
        raise BadRecord(f"{what} is empty")
    return value


def extract_instruction(row: Any, fmt: str, instruction_field: str = "instruction") -> str:
    """The instruction of one parsed row in format `fmt` (not `auto`); raises BadRecord with the reason."""
    if not isinstance(row, dict):
        raise BadRecord(f"row is not a JSON object (got {type(row).__name__})")
    if fmt == "sharegpt":
        return first_user_turn(row.get("conversations"), "from", "value")
    if fmt == "messages":
        return first_user_turn(row.get("messages"), "role", "content")
    if instruction_field not in row:
        raise BadRecord(f"missing field {instruction_field!r} (keys: {', '.join(sorted(map(str, row))) or 'none'})")
    text = _text(row[instruction_field], instruction_field)
    if fmt == "alpaca":
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise BadRecord(f"input is not text (got {type(extra).__name__})")
        if extra and not is_blank(extra):
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
    listing = list_pool_files(paths)
    files = listing.files
    read = PoolRead([], [], files, listing.skipped_message())
    seen_ids: dict[str, str] = {}
    seen_text: dict[str, int] = {}
    root = os.path.commonpath([os.path.abspath(f) for f in files]) if len(files) > 1 and "://" not in files[0] \
        else None
    for file in files:
        shown = os.path.relpath(os.path.abspath(file), root) if root else file
        text_lines = kind_of(file) == "text"
        for rec in iter_records(file):
            if limit is not None and len(read.rows) >= limit:
                return read
            source = f"{shown}:{rec.line}"
            try:
                if rec.error:
                    raise BadRecord(rec.error)
                parsed = {"instruction": rec.value} if text_lines else rec.value
                row_fmt = detect_pool_format(parsed) if fmt == "auto" and isinstance(parsed, dict) else fmt
                text = extract_instruction(parsed, "plain" if row_fmt == "auto" else row_fmt, instruction_field)
                rid = _row_id(parsed, id_field, text, seen_text)
                if rid in seen_ids:
                    raise BadRecord(f"duplicate id {rid!r} (first at {seen_ids[rid]})")
            except BadRecord as e:
                read.rejects.append(Reject(source, str(e), rec.raw))
                continue
            seen_ids[rid] = source
            read.rows.append({C.ID: rid, C.INSTRUCTION: text, C.SOURCE: source})
    return read


def _row_id(row: Any, id_field: str | None, text: str, seen_text: dict[str, int]) -> str:
    if id_field and isinstance(row, dict) and row.get(id_field) not in (None, ""):
        value = row[id_field]
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise BadRecord(f"{id_field} must be a string or integer, got {type(value).__name__}")
        return str(value)
    seen_text[text] = seen_text.get(text, 0) + 1
    return content_id(text, seen_text[text])


def check_rejects(read: PoolRead, on_bad_rows: str, show: int = 5) -> None:
    """With `on_bad_rows: fail`, raise a UserError naming the first bad rows (FILE:LINE: reason)."""
    if on_bad_rows == "fail":
        fail_on_rejects(read.rejects, "pool", "pool.on_bad_rows", show=show)
