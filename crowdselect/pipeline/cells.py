"""The steps of an experiment cell, keyed by what decides their output, so that a table never mixes numbers
made with other settings.

Each step folder holds STEP_FILE = {digest, settings, done}; `open_step` compares it with the settings of
this run: the same and done -> skipped; the same and unfinished -> resumed (training from its checkpoints,
an eval from what it answered and judged); other settings, or a folder made without recorded settings ->
emptied and redone, saying which keys changed. The settings of each step:

    select  the strategy's SelectConfig as the cell builds it (resolved: defaults included, so a changed
            default counts; whatever the selection config holds, new keys included) + the crowd's version
    train   the cell's TrainConfig (resolved) + the digest of the selected rows it trains on
    eval    the eval's own settings (crowdselect/eval/resume.py: config, input files, judge) + the train
            step's digest (a retrained student is a new model in the same folder)

Scheduling keys (core/digest.SCHEDULING) and paths that only say where files go are left out: moving Ray or
the replicas around redoes nothing. Also here: the proxy's held-out check against a selection.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from crowdselect.core import jsonout, log, storage
from crowdselect.core.config import to_dict
from crowdselect.core.digest import SCHEDULING, changed_keys, file_digest, fingerprint, without_keys
from crowdselect.core.errors import UserError
from crowdselect.core.secrets import scrub_config
from crowdselect.core.text import show

STEP_FILE = "_step.json"
# TrainConfig keys that say where files go or how a run is logged, not what the student learns
TRAIN_NOT_OUTPUT = ("name", "tracking", "peak_tflops", "data.path", "export.path", "checkpoint.every_steps",
                    "checkpoint.keep", "checkpoint.storage_path", "checkpoint.max_failures",
                    "scaling.resources_per_worker", "scaling.accelerator_type", "scaling.placement_strategy")


@dataclass
class Step:
    label: str  # for messages: "select crowdselect (seed 0)", "crowdselect__smol__seed0: train"
    folder: str
    settings: dict[str, Any]
    output: str  # the file the step ends by writing (run.json, train.json, summary.json): done needs it

    @property
    def digest(self) -> str:
        return fingerprint(self.settings)


def open_step(step: Step) -> bool:
    """True when the step is done with these settings (skip it). Otherwise its folder is made ready and the
    settings recorded as unfinished: kept for a resume (the same settings), else emptied, saying why."""
    path = storage.join(step.folder, STEP_FILE)
    old = json.loads(storage.read_text(path)) if storage.exists(path) else None
    if old is not None and old.get("digest") == step.digest:
        if old.get("done") and storage.exists(storage.join(step.folder, step.output)):
            return True
        log.say(f"{step.label}: resumed (same settings, not finished)")
    else:
        why = None
        if old is not None:
            why = f"settings changed ({changed_keys(old.get('settings'), step.settings)})"
        elif storage.exists(step.folder) and storage.list_files(step.folder):
            why = "made without recorded settings (an earlier version)"
        if why:
            log.say(f"{step.label}: redone: {why}")
            storage.delete_dir(step.folder)
    _record(step, done=False)
    return False


def finish_step(step: Step) -> None:
    _record(step, done=True)


def _record(step: Step, done: bool) -> None:
    storage.makedirs(step.folder)
    storage.write_text(storage.join(step.folder, STEP_FILE),
                       jsonout.dumps({"digest": step.digest, "done": done, "settings": step.settings,
                                      "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1))


def output_settings(config: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A built config as the settings that decide its output: no scheduling keys (at any depth), no dotted
    `drop` paths, no credentials."""
    tree = without_keys(to_dict(config), SCHEDULING)
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = tree
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return scrub_config(tree)


def select_settings(select_cfg: Any, crowd_paths: list[str]) -> dict[str, Any]:
    """A selection's settings: its resolved SelectConfig and the version of the crowd it reads."""
    return {"select": output_settings(select_cfg), "crowd": crowd_version(crowd_paths)}


def train_settings(train_cfg: Any, data_path: str) -> dict[str, Any]:
    """A training's settings: its resolved TrainConfig and the digest of the rows it trains on."""
    return {"train": output_settings(train_cfg, TRAIN_NOT_OUTPUT), "data": file_digest(data_path)}


def eval_step_settings(eval_cfg: Any, train_digest: str) -> dict[str, Any]:
    from crowdselect.eval.resume import eval_settings

    settings = eval_settings(eval_cfg)
    settings["models"] = {k: v for k, v in settings["models"].items() if k != "model"}  # the train digest says it
    return {"eval": settings, "train": train_digest}


def crowd_version(paths: list[str]) -> dict[str, str]:
    """Per crowd path: a `crowdselect run` crowd folder's manifest (its fingerprint and last write), else the
    digests of the data files behind it, listed as the readers list them (folders, globs, URIs): a local file
    by its bytes, a remote one by its size and modification time."""
    from crowdselect.core.records import list_data_files

    out = {}
    for p in paths:
        manifest = storage.join(p, "_manifest.json")
        if storage.exists(manifest):
            m = json.loads(storage.read_text(manifest))
            out[p] = fingerprint([m.get("fingerprint"), m.get("shards"), m.get("extra")])
        else:
            out[p] = fingerprint([[f, file_digest(f)] for f in list_data_files([p], what="crowd").files])
    return out


def failed_judge_requests(summary: dict[str, Any]) -> int:
    """Judge requests of an eval that got no reply (MT-bench turns, pairwise games): a rerun asks them again."""
    return int(summary.get("failed") or 0) + int((summary.get("pairwise") or {}).get("failed_games") or 0)


def check_held_out(selected: str, instructions: str, limit: int | None, strategy: str) -> None:
    """The proxy's held-out instructions must not be in the training selection (compared with case and white
    space folded); UserError naming how many are and the first."""
    from crowdselect.eval.proxy import load_held_out

    def norm(text: str) -> str:
        return " ".join(str(text).split()).casefold()

    held = {norm(q["turns"][0]) for q in load_held_out(instructions, limit)}
    rows = [json.loads(x) for x in storage.read_text(selected).splitlines() if x.strip()]
    inside = [r["instruction"] for r in rows if norm(r["instruction"]) in held]
    if inside:
        raise UserError(f"proxy.instructions: {len(inside)} of the held-out instructions in {instructions} are in "
                        f"the {strategy} selection (first: {show(inside[0], 80)}); a PROXY score on rows the "
                        "student trained on is not held out: take them out of the held-out file or the pool")
