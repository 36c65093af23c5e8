"""Training rows: read JSONL / JSON / Parquet files and turn every row into chat `messages`.

Accepted row shapes (`data.format: auto` picks per row, in this order):
    messages   {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}
               (the `selected.jsonl` that `crowdselect select` writes has this, plus id, score, ...)
    sharegpt   {"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}
    alpaca     {"instruction": ..., "input": ... (optional), "output": ...}; "response" is read as "output"

Files: JSONL/JSON/Parquet/Arrow (line formats also .gz .zst .bz2), folders read recursively (non-data files
skipped and named), globs, s3:// gs:// URIs — `crowdselect.core.records` reads them all.
A row that cannot be used (no assistant turn, empty text, unknown role, not JSON, invalid UTF-8) is a
`Reject` with its source "FILE:LINE" and a reason. This module knows nothing of tokenisers, Ray or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crowdselect.core import columns as C
from crowdselect.core.blank import is_blank
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import BadRecord, Reject

if TYPE_CHECKING:
    from crowdselect.core.records import Listing

ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


@dataclass
class Conversation:
    source: str
    messages: list[dict[str, str]]


def list_files(paths: list[str]) -> Listing:
    """Files, folders (recursive; only data files), globs, s3:// gs:// URIs: see `crowdselect.core.records`."""
    # imported here: core.records needs pyarrow, and the training loop imports this module without it
    from crowdselect.core.records import JSON_SUFFIXES, TABLE_SUFFIXES, list_data_files

    return list_data_files(paths, JSON_SUFFIXES + TABLE_SUFFIXES, what="training data")


def to_messages(row: dict, fmt: str = "auto", system_prompt: str | None = None) -> list[dict[str, str]]:
    """One input row -> chat messages [{"role", "content"}]; raises BadRecord with the reason.

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
        raise BadRecord(f"no 'messages', 'conversations' or 'instruction' field (keys: {', '.join(sorted(row))})")
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    check_messages(messages)
    return messages


def check_messages(messages: list[dict[str, str]]) -> None:
    """Every turn has a known role and non-empty text; at least one assistant turn."""
    for i, m in enumerate(messages, start=1):
        if m["role"] not in ROLES:
            raise BadRecord(f"message {i}: unknown role {m['role']!r} (known: {', '.join(ROLES)})")
        if is_blank(m["content"]):
            raise BadRecord(f"message {i} ({m['role']}): empty text")
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRecord("no assistant turn: nothing to learn from")


def _from_messages(value) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRecord("'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise BadRecord(f"message {i}: needs 'role' and 'content'")
        if not isinstance(m["content"], str):
            raise BadRecord(f"message {i}: 'content' must be text, got {type(m['content']).__name__}")
        out.append({"role": str(m["role"]), "content": m["content"]})
    return out


def _from_sharegpt(value) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRecord("'conversations' must be a non-empty list")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or "from" not in m or "value" not in m:
            raise BadRecord(f"turn {i}: needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(m["from"]).lower())
        if role is None:
            raise BadRecord(f"turn {i}: unknown speaker {m['from']!r} (known: {', '.join(SHAREGPT_ROLES)})")
        if not isinstance(m["value"], str):
            raise BadRecord(f"turn {i}: 'value' must be text")
        out.append({"role": role, "content": m["value"]})
    return out


def _from_alpaca(row: dict) -> list[dict[str, str]]:
    instruction = row.get(C.INSTRUCTION)
    output = row.get("output", row.get(C.RESPONSE))
    if not isinstance(instruction, str):
        raise BadRecord("'instruction' must be text")
    if output is None:
        raise BadRecord("no 'output' (or 'response'): no assistant turn")
    if not isinstance(output, str):
        raise BadRecord("'output' must be text")
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise BadRecord("'input' must be text")
    prompt = f"{instruction}\n\n{extra}" if not is_blank(extra) else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def read_conversations(paths: list[str], fmt: str = "auto",
                       system_prompt: str | None = None) -> tuple[list[Conversation], list[Reject]]:
    """All rows of all files: (usable conversations, rejected rows with reasons). Every row lands in one list."""
    if not paths:
        raise UserError("data.path: give at least one training data file or folder")
    from crowdselect.core.records import iter_records

    listing = list_files(paths)
    if listing.skipped:
        print(f"[train] data.path: {listing.skipped_message()}", flush=True)
    good: list[Conversation] = []
    bad: list[Reject] = []
    for path in listing.files:
        for rec in iter_records(path):
            source = f"{path}:{rec.line}"
            try:
                if rec.error:
                    raise BadRecord(rec.error)
                if not isinstance(rec.value, dict):
                    raise BadRecord("not a JSON object")
                good.append(Conversation(source, to_messages(rec.value, fmt, system_prompt)))
            except BadRecord as e:
                bad.append(Reject(source, str(e), rec.raw))
    return good, bad
