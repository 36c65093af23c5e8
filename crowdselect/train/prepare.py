"""Driver-side data preparation: rows -> messages -> tokens (loss mask) -> packed, shuffled, padded rows.

Runs before any worker starts, so a bad dataset fails fast with FILE:LINE: reason. With
`data.on_bad_rows: quarantine` bad rows are counted by reason and written to OUT/rejected.jsonl; every input
row is accounted for in the report: used + rejected == read. `plan_steps()` turns the row count into the number of
micro-batches per worker and optimizer steps.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import BadRecord, Reject, fail_on_rejects
from crowdselect.train.config import TrainConfig
from crowdselect.train.data import read_conversations
from crowdselect.train.tokenize import ChatTokenizer, pack, pad_to_multiple


@dataclass
class Prepared:
    rows: list[dict[str, list[int]]]  # input_ids, labels (+ position_ids when packed); len % (workers*batch) == 0
    pad_id: int
    report: dict[str, Any] = field(default_factory=dict)
    bad: list[Reject] = field(default_factory=list)


def prepare(cfg: TrainConfig, model_path: str) -> Prepared:
    """Read, tokenise with the student's chat template, handle bad rows, shuffle, pack, pad to the workers."""
    d = cfg.data
    conversations, bad = read_conversations(d.path, d.format, d.system_prompt)
    tok = ChatTokenizer(model_path, d.max_length, cfg.model.chat_template, cfg.model.revision,
                        cfg.model.trust_remote_code)
    examples, truncated = [], 0
    for conv in tqdm(conversations, desc="tokenise", unit="row", disable=len(conversations) < 1000):
        try:
            ex = tok(conv.messages)
        except BadRecord as e:
            bad.append(Reject(conv.source, str(e), json.dumps({C.MESSAGES: conv.messages})))
            continue
        truncated += ex.pop("truncated")
        examples.append(ex)
    n_read = len(examples) + len(bad)
    check_bad_rows(bad, d.on_bad_rows, n_read)
    if not examples:
        raise UserError(f"data.path: none of the {n_read} rows is usable")
    if d.shuffle:
        random.Random(d.seed).shuffle(examples)
    rows = pack(examples, d.max_length) if d.packing else examples
    rows, repeated = pad_to_multiple(rows, cfg.scaling.workers * cfg.optim.per_device_batch)
    report = {
        "rows_read": n_read, "rows_used": len(examples), "rows_rejected": len(bad),
        "reject_reasons": dict(Counter(_reason_kind(b.reason) for b in bad)),
        "rows_truncated": truncated, "sequences": len(rows), "packed": d.packing,
        "sequences_repeated_to_fill_workers": repeated,
        "tokens": sum(len(ex[C.INPUT_IDS]) for ex in examples),
        "assistant_tokens": sum(sum(x != -100 for x in ex[C.LABELS]) for ex in examples),
    }
    return Prepared(rows, tok.pad_id, report, bad)


def check_bad_rows(bad: list[Reject], mode: str, n_read: int) -> None:
    """fail: raise a UserError naming the first bad rows (and how many more); quarantine: nothing to do here."""
    if mode == "fail":
        fail_on_rejects(bad, "training", "data.on_bad_rows", n_read=n_read)


def plan_steps(n_sequences: int, cfg: TrainConfig) -> dict[str, int]:
    """Micro-batches per worker per epoch and optimizer steps (whole run, and this launch after max_steps)."""
    o = cfg.optim
    per_epoch = n_sequences // (cfg.scaling.workers * o.per_device_batch)
    total_micro = per_epoch * o.epochs
    total_steps = total_micro // o.grad_accum
    if total_steps < 1:
        raise UserError(f"data: {n_sequences} sequences give no optimizer step with {cfg.scaling.workers} workers "
                        f"x per_device_batch {o.per_device_batch} x grad_accum {o.grad_accum} x {o.epochs} epochs")
    steps = min(total_steps, o.max_steps) if o.max_steps else total_steps
    return {"micro_per_epoch": per_epoch, "total_steps": total_steps, "steps": steps,
            "micro_batches_unused_at_end": total_micro % o.grad_accum}


def _reason_kind(reason: str) -> str:
    """Reasons grouped for the summary: numbers replaced by N ("message N (assistant): empty text")."""
    return re.sub(r"\d+", "N", reason)
