"""Rejects and the bad-rows policy, the same for every command: `Reject` rows written to `rejected.jsonl` as
`{source, reason, raw}`; policy `fail` stops with FILE:LINE: reason (exit 2), `quarantine` writes and goes on.

No pyarrow, no Ray at import time (the training loop imports this on machines without them).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from crowdselect.core.config import ConfigError
from crowdselect.core.errors import UserError
from crowdselect.core.text import printable
from crowdselect.core.text import show as shown

RAW_LIMIT = 2000  # characters of a rejected row kept in rejected.jsonl
REASON_LIMIT = 500  # characters of a reason printed on the terminal (rejected.jsonl keeps it whole)
REJECTS_FILE = "rejected.jsonl"
POLICIES = ("fail", "quarantine")


class BadRecord(ValueError):
    """A row that cannot be used; str(e) is the reason (the caller adds FILE:LINE)."""


@dataclass
class Reject:
    """One rejected input row: where it came from, why, and the row as read (cut to RAW_LIMIT)."""

    source: str  # "FILE:LINE"
    reason: str
    raw: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason, "raw": self.raw[:RAW_LIMIT]}


def write_rejects(rejects: Iterable[Reject], uri: str) -> None:
    """rejected.jsonl: one `{source, reason, raw}` object per line, in input order."""
    from crowdselect.core import storage

    storage.write_text(uri, "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rejects))


def bad_rows_policy(value: str, key: str = "on_bad_rows") -> str:
    """`fail` or `quarantine`; the old `skip` is read as `quarantine` with a warning."""
    if value == "skip":
        warnings.warn(f"{key}: 'skip' is deprecated, use 'quarantine' (bad rows go to {REJECTS_FILE})",
                      FutureWarning, stacklevel=2)
        return "quarantine"
    if value not in POLICIES:
        raise ConfigError(f"{key}: must be one of {', '.join(POLICIES)}, got {value!r}")
    return value


def reason_line(source: str, reason: str) -> str:
    """`FILE:LINE: reason` as printed: one line, control characters escaped, the reason clipped."""
    return f"{printable(source, layout=False)}: {shown(reason, REASON_LIMIT, layout=False)}"


def fail_on_rejects(rejects: list[Reject], what: str, key: str, n_read: int | None = None, show: int = 5) -> None:
    """Raise a UserError naming the first bad rows (FILE:LINE: reason) and how to go on; nothing if none."""
    if not rejects:
        return
    lines = [f"  {reason_line(r.source, r.reason)}" for r in rejects[:show]]
    if len(rejects) > show:
        lines.append(f"  ... and {len(rejects) - show} more")
    of = f" of {n_read} rows" if n_read is not None else ""
    raise UserError(f"{len(rejects)} bad {what} row(s){of}:\n" + "\n".join(lines)
                    + f"\n(set {key}=quarantine to write them to {REJECTS_FILE} and go on)")
