"""Training rows: read JSONL / JSON / Parquet files and turn every row into chat `messages`.

Accepted row shapes (`data.format: auto` picks per row, in this order):
    messages   {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}
               (the `selected.jsonl` that `crowdselect select` writes has this, plus id, score, ...)
    sharegpt   {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}
    alpaca     {"instruction": ..., "input": ... (optional), "output": ...}; "response" is read as "output"

A row that cannot be used (no assistant turn, empty text, unknown role, not JSON) is a `BadRow` with its
source "FILE:LINE" and a reason. This module knows nothing of tokenisers, Ray or torch; pyarrow (storage)
is imported when files are read, so that the training loop's modules import on a machine without it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
SUFFIXES = (".jsonl", ".json", ".parquet")


class BadRowError(ValueError):
    """A row that cannot be trained on; str(e) is the reason."""


@dataclass
class BadRow:
    source: str  # "FILE:LINE"
    reason: str
    raw: str  # the row as read, for rejects.jsonl


@dataclass
class Conversation:
    source: str
    messages: list[dict[str, str]]


def list_files(path: str) -> list[str]:
    """A file, a folder (its .jsonl/.json/.parquet files, sorted), or a glob; local or s3:// gs://."""
    import pyarrow.fs as pafs

    from crowdselect.core import storage
    if storage.is_remote(path):
        fs, inner = storage.filesystem(path)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            return [path]
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(inner, recursive=False))
            names = sorted(i.path for i in infos if i.path.endswith(SUFFIXES))
            scheme = path.split("://", 1)[0]
            return [f"{scheme}://{n}" for n in names]
        parent, pattern = posixpath.split(inner)
        infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
        names = sorted(i.path for i in infos if fnmatch.fnmatch(posixpath.basename(i.path), pattern))
        scheme = path.split("://", 1)[0]
        return [f"{scheme}://{n}" for n in names]
    if os.path.isdir(path):
        return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(SUFFIXES))
    if os.path.isfile(path):
        return [path]
    return sorted(glob(path))


def read_records(path: str) -> Iterator[tuple[str, str, dict | None]]:
    """(source "FILE:LINE", raw text, parsed dict or None when the line is not a JSON object) per row."""
    from crowdselect.core import storage
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        fs, inner = storage.filesystem(path)
        for i, row in enumerate(pq.read_table(inner, filesystem=fs).to_pylist(), start=1):
            yield f"{path}:{i}", json.dumps(row, default=str), row
        return
    text = storage.read_text(path)
    if path.endswith(".json") and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        for i, item in enumerate(items, start=1):
            yield f"{path}:item {i}", json.dumps(item), item if isinstance(item, dict) else None
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        yield f"{path}:{lineno}", line, obj if isinstance(obj, dict) else None


def to_messages(row: dict, fmt: str = "auto", system_prompt: str | None = None) -> list[dict[str, str]]:
    """One input row -> chat messages [{"role", "content"}]; raises BadRowError with the reason.

    >>> to_messages({"instruction": "Add 2+2.", "output": "4"})
    [{'role': 'user', 'content': 'Add 2+2.'}, {'role': 'assistant', 'content': '4'}]
    """
    if fmt == "messages" or (fmt == "auto" and C.MESSAGES in row):
        messages = _from_messages(row.get(C.MESSAGES))
    elif fmt == "sharegpt" or (fmt == "auto" and "conversations" in row):
        messages = _from_sharegpt(row.get("conversations"))
    elif fmt == "alpaca" or (fmt == "auto" and C.INSTRUCTION in row):
        messages = _from_alpaca(row)
    else:
        raise BadRowError(f"no 'messages', 'conversations' or 'instruction' field (keys: {', '.join(sorted(row))})")
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    check_messages(messages)
    return messages


def check_messages(messages: list[dict[str, str]]) -> None:
    """Every turn has a known role and non-empty text; at least one assistant turn."""
    for i, m in enumerate(messages, start=1):
        if m["role"] not in ROLES:
            raise BadRowError(f"message {i}: unknown role {m['role']!r} (known: {', '.join(ROLES)})")
        if not m["content"].strip():
            raise BadRowError(f"message {i} ({m['role']}): empty text")
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRowError("no assistant turn: nothing to learn from")


def _from_messages(value) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRowError("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise BadRowError(f"message {i}: needs 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise BadRowError(f"message {i}: 'content' must be text, got {type(m['content']).__name__}")
        out.append({"role": str(m["role"]), "content": m["content"]})
    return out


def _from_sharegpt(value) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRowError("'conversations' must be a non-empty list")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or "from" not in m or "value" not in m:
            raise BadRowError(f"turn {i}: needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(m["from"]).lower())
        if role is None:
            raise BadRowError(f"turn {i}: unknown speaker {m['from']!r} (known: {', '.join(SHAREGPT_ROLES)})")
        if not isinstance(m["value"], str):
            raise BadRowError(f"turn {i}: 'value' must be text")
        out.append({"role": role, "content": m["value"]})
    return out


def _from_alpaca(row: dict) -> list[dict[str, str]]:
    instruction = row.get(C.INSTRUCTION)
    output = row.get("output", row.get(C.RESPONSE))
    if not isinstance(instruction, str):
        raise BadRowError("'instruction' must be text")
    if output is None:
        raise BadRowError("no 'output' (or 'response'): no assistant turn")
    if not isinstance(output, str):
        raise BadRowError("'output' must be text")
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise BadRowError("'input' must be text")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def read_conversations(paths: list[str], fmt: str = "auto",
                       system_prompt: str | None = None) -> tuple[list[Conversation], list[BadRow]]:
    """All rows of all files: (usable conversations, bad rows with reasons). Every row lands in one list."""
    files = [f for p in paths for f in list_files(p)]
    if not files:
        raise UserError(f"data.path: no data files found at {', '.join(paths)}")
    good: list[Conversation] = []
    bad: list[BadRow] = []
    for path in files:
        for source, raw, row in read_records(path):
            if row is None:
                bad.append(BadRow(source, "not a JSON object", raw))
                continue
            try:
                good.append(Conversation(source, to_messages(row, fmt, system_prompt)))
            except BadRowError as e:
                bad.append(BadRow(source, str(e), raw))
    return good, bad
