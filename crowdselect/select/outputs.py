"""Files a selection run writes: selected.jsonl, SFT exports, rejected.jsonl, run.json.

`selected_records` fixes the contract of selected.jsonl: one JSON object per line with id, instruction,
response (the crowd's best-rewarded answer), model, reward, cluster, score, the three metrics and
`messages` ([user, assistant]) for SFT. Keys are written in a fixed order and floats with repr, so the
same selection gives a byte-identical file.
"""

from __future__ import annotations

import json
import math

from crowdselect.core import columns as C
from crowdselect.core import jsonout, storage
from crowdselect.core.secrets import scrub_config


def _num(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def selected_records(rows: list[dict]) -> list[dict]:
    """Scored rows (already in final order) -> selected.jsonl records."""
    out = []
    for r in rows:
        out.append({
            C.ID: r[C.ID], C.INSTRUCTION: r[C.INSTRUCTION], C.RESPONSE: r[C.BEST_RESPONSE],
            C.MODEL: r[C.BEST_MODEL], C.REWARD: _num(r[C.BEST_REWARD]), C.CLUSTER: int(r[C.CLUSTER]),
            C.SCORE: _num(r[C.SCORE]),
            **{m: _num(r[m]) for m in C.METRICS},
            C.MESSAGES: [{"role": "user", "content": r[C.INSTRUCTION]},
                         {"role": "assistant", "content": r[C.BEST_RESPONSE]}],
        })
    return out


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)


def write_selected(out: str, records: list[dict], llamafactory_format: str = "alpaca") -> list[str]:
    """selected.jsonl plus LLaMA-Factory (alpaca or sharegpt + dataset_info.json) and TRL/HF exports."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    storage.write_text(storage.join(out, "selected.jsonl"), jsonl(records))
    lf = storage.join(out, "exports", "llamafactory")
    if llamafactory_format == "sharegpt":
        data = [{"conversations": [{"from": "human", "value": r[C.INSTRUCTION]},
                                   {"from": "gpt", "value": r[C.RESPONSE]}]} for r in records]
        info = {"crowdselect": {"file_name": "crowdselect.json", "formatting": "sharegpt",
                                "columns": {"messages": "conversations"}}}
    else:
        data = [{"instruction": r[C.INSTRUCTION], "input": "", "output": r[C.RESPONSE]} for r in records]
        info = {"crowdselect": {"file_name": "crowdselect.json", "formatting": "alpaca"}}
    storage.write_text(storage.join(lf, "crowdselect.json"), json.dumps(data, ensure_ascii=False, indent=1))
    storage.write_text(storage.join(lf, "dataset_info.json"), json.dumps(info, indent=1))
    table = pa.Table.from_pylist([{C.ID: r[C.ID], C.MESSAGES: r[C.MESSAGES]} for r in records])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    trl = storage.join(out, "exports", "trl", "train.parquet")
    storage.write_bytes(trl, sink.getvalue().to_pybytes())
    return [storage.join(out, "selected.jsonl"), storage.join(lf, "crowdselect.json"), trl]


def write_json(uri: str, obj: dict) -> None:
    """run.json: the record, scrubbed of credentials (`scrub_config`), as strict JSON."""
    storage.write_text(uri, jsonout.dumps(scrub_config(obj), indent=2, sort_keys=False) + "\n")
