"""The run directory: one folder per stage, Parquet shards, and a manifest that makes reruns resume.

    DIR/<stage>/shard-00000.parquet ...   one file per pool shard, written whole (temp name + rename)
    DIR/<stage>/_manifest.json            {"fingerprint", "shards": {name: {"rows", "errors"}}, "complete", ...}

A shard is done once it is named in the manifest; a rerun skips done shards and (re)writes the others, so a
killed driver loses at most the shards in flight and an interrupted stage ends as an uninterrupted one would.
The fingerprint is a hash of the settings the stage's output depends on: a rerun with other settings must
not mix old and new shards (`StageStore.open` refuses, or starts over when the stage is cheap to redo).
Works on local folders and s3:// gs:// URIs through `crowdselect.core.storage`.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crowdselect.core import jsonout, storage
from crowdselect.core.digest import changed_keys, fingerprint
from crowdselect.core.errors import UserError

MANIFEST = "_manifest.json"


def write_parquet(uri: str, table: pa.Table) -> None:
    """A Parquet file written whole (`storage.write_bytes`: readers never see half of it)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(uri, buf.getvalue())


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


@dataclass
class StageStore:
    """One stage folder: which shards are done, and atomic writes of the rest."""

    uri: str
    fp: str
    settings: Any = None
    shards: dict[str, dict[str, int]] = field(default_factory=dict)
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, uri: str, settings: Any, *, redo_on_change: bool) -> StageStore:
        """Load the stage's manifest. Changed settings: start over if `redo_on_change`, else UserError."""
        fp = fingerprint(settings)
        path = storage.join(uri, MANIFEST)
        if not storage.exists(path):
            return cls(uri, fp, settings)
        data = json.loads(storage.read_text(path))
        if data.get("fingerprint") != fp:
            if not redo_on_change:
                changed = changed_keys(data.get("settings"), settings)
                raise UserError(
                    f"{uri} was made with other settings ({changed}); rerunning would mix old and new "
                    f"results. Remove that folder to redo the stage, or give another --out."
                )
            storage.delete_dir(uri)
            return cls(uri, fp, settings)
        return cls(uri, fp, settings, data.get("shards", {}), data.get("complete", False), data.get("extra", {}))

    def is_done(self, shard: str) -> bool:
        return shard in self.shards

    def file(self, shard: str) -> str:
        return storage.join(self.uri, f"{shard}.parquet")

    @property
    def version(self) -> str:
        """Changes whenever the stage writes a shard: downstream stages put it in their fingerprints."""
        return f"{self.fp}-{self.extra.get('written', '')}"

    def write_shard(self, shard: str, table: pa.Table, errors: int = 0) -> None:
        """Write one shard whole, then record it as done (a crash in between only redoes this shard)."""
        write_parquet(self.file(shard), table)
        self.record_shard(shard, table.num_rows, errors)

    def record_shard(self, shard: str, rows: int, errors: int = 0) -> None:
        """Record a shard whose file is written (by this process or a Ray worker) as done."""
        self.extra["written"] = uuid.uuid4().hex[:12]
        self.shards[shard] = {"rows": int(rows), "errors": int(errors)}
        self._save()

    def read_shard(self, shard: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(io.BytesIO(storage.read_bytes(self.file(shard))), columns=columns)

    def mark_complete(self, **extra: Any) -> None:
        self.complete = True
        self.extra.update(extra)
        self._save()

    def counts(self) -> dict[str, int]:
        return {"shards": len(self.shards), "rows": sum(s["rows"] for s in self.shards.values()),
                "errors": sum(s["errors"] for s in self.shards.values())}

    def _save(self) -> None:
        data = {"fingerprint": self.fp, "settings": self.settings, "shards": dict(sorted(self.shards.items())),
                "complete": self.complete, "extra": self.extra, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
        storage.write_text(storage.join(self.uri, MANIFEST), jsonout.dumps(data, indent=1))
