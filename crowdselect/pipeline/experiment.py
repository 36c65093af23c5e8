"""`crowdselect experiment CONFIG.yaml [--out DIR] [key=value ...]`: compare selection strategies by the
students they train. Each cell (strategy x student x seed) is select -> train -> eval through the same code
as the three commands (`run_select`, `run_training`, `run_eval`), in its own folder:

    DIR/select/<strategy>__seed<s>/          the selection (shared by the students of that strategy and seed)
    DIR/cells/<strategy>__<student>__seed<s>/{train/, eval/, cell.json}
    DIR/results.csv  results.md  results.png  experiment.json  (crowdselect/pipeline/experiment_results.py)

Rerunning skips what is finished: a selection with its run.json, a training with its train.json, an eval
with its summary.json, a cell with `cell.json: status done`. A failed cell is recorded (cell.json: status
failed, the error) and the others go on; a cell killed midway has no cell.json and is redone alone (its
training resumes from its last checkpoint). Cells run `parallel` at a time (threads sharing one Ray).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import yaml

from crowdselect.core import jsonout, log, storage
from crowdselect.core.config import build, load_yaml, parse_yaml, to_dict
from crowdselect.core.errors import UserError
from crowdselect.core.paths import check_out_dir, remove_outputs
from crowdselect.core.secrets import scrub_config
from crowdselect.pipeline.experiment_config import (
    ExperimentConfig,
    StrategySpec,
    StudentSpec,
    cell_eval_dict,
    cell_train_dict,
    load_experiment_config,
)
from crowdselect.report.html import REPORT, write_report
from crowdselect.select.card import CardConfig


@dataclass
class Crowd:
    """Where the crowd table is and what made it (for the selection config and the lineage)."""

    input: dict[str, Any]  # the select config's `input:` section
    generators: list[dict[str, Any]]
    lineage: dict[str, Any]


def open_crowd(cfg: ExperimentConfig) -> Crowd:
    """The crowd of a finished `crowdselect run` folder, or a crowd file with its crowd YAML."""
    c = cfg.crowd
    if c.run:
        run_json, run_yaml = storage.join(c.run, "run.json"), storage.join(c.run, "config.yaml")
        if not storage.exists(run_json):
            raise UserError(f"crowd.run: {run_json} is missing: is {c.run} a finished `crowdselect run` folder?")
        run = json.loads(storage.read_text(run_json))
        gens = (parse_yaml(storage.read_text(run_yaml), run_yaml) or {}).get("generators") or []
        return Crowd({"path": [run["crowd"]["path"]], "format": "canonical"}, gens,
                     {"run": c.run, "crowd": run["crowd"], "generators": run["generators"], "rewards": run["rewards"]})
    crowd_yaml = load_yaml(c.config)
    gens = crowd_yaml.get("generators") or []
    own = dict(crowd_yaml.get("input") or {})  # how the crowd YAML reads its table (input.wide: the columns)
    fmt = c.format if c.format != "auto" else own.get("format", "auto")
    return Crowd({**own, "path": list(c.input), "format": fmt}, gens,
                 {"input": list(c.input), "config": c.config, "generators": gens, "rewards": None,
                  "card": crowd_yaml.get("card") or {}})


def select_dir(cfg: ExperimentConfig, strategy: StrategySpec, seed: int) -> str:
    return storage.join(cfg.out, "select", f"{strategy.name}__seed{seed}")


def ensure_selection(cfg: ExperimentConfig, crowd: Crowd, strategy: StrategySpec, seed: int) -> str:
    """Run (or keep) one strategy's selection; returns its folder."""
    from crowdselect.select.config import SelectConfig
    from crowdselect.select.job import run_select

    out = select_dir(cfg, strategy, seed)
    if storage.exists(storage.join(out, "run.json")):
        return out
    selection = {"k": cfg.k, "clusters": cfg.clusters, "strategy": strategy.strategy or strategy.name,
                 "cluster": strategy.cluster, "seed": seed}
    if strategy.weights is not None:
        selection["weights"] = strategy.weights
    data = {"generators": crowd.generators, "input": crowd.input, "selection": selection,
            "embedder": to_dict(cfg.embedder), "baselines": strategy.baselines, "ray": to_dict(cfg.ray), "out": out,
            "decontaminate": to_dict(cfg.decontaminate), "card": selection_card(cfg, crowd)}
    log.say(f"select {strategy.name} (seed {seed}) ...")
    run_select(build(SelectConfig, data, file=f"experiment strategy {strategy.name}"))
    return out


def selection_card(cfg: ExperimentConfig, crowd: Crowd) -> dict[str, Any]:
    """The `card:` of every selection: the experiment's, with the crowd's pool and primary reward filled in."""
    primary = next((r for r in crowd.lineage.get("rewards") or [] if r.get("primary")), None)
    card, default = to_dict(cfg.card), to_dict(CardConfig())
    for key, value in (crowd.lineage.get("card") or {}).items():  # the crowd YAML's card, where ours is unset
        if key in card and card[key] == default[key]:
            card[key] = value
    card["pool"] = card["pool"] or (f"the crowd of `crowdselect run` {crowd.lineage['run']}" if crowd.lineage.get("run")
                                    else ", ".join(crowd.input["path"]))
    if primary and not card["reward_model"]:
        card["reward_model"] = f"{primary['model']} ({primary['kind']}, reward `{primary['name']}`)"
    return card


def selection_digest(select_out: str) -> str:
    """sha256 of the selected ids in order: two cells with the same digest trained on the same rows."""
    ids = [json.loads(x).get("id") for x in storage.read_text(storage.join(select_out, "selected.jsonl")).splitlines()
           if x.strip()]
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def cell_name(strategy: StrategySpec, student: StudentSpec, seed: int) -> str:
    return f"{strategy.name}__{student.name}__seed{seed}"


def run_cell(cfg: ExperimentConfig, strategy: StrategySpec, student: StudentSpec, seed: int) -> dict[str, Any]:
    """Train and evaluate one cell (its selection exists); returns and writes cell.json."""
    from crowdselect.eval.config import EvalConfig
    from crowdselect.eval.job import run_eval
    from crowdselect.train.config import TrainConfig
    from crowdselect.train.job import run_training

    out = storage.join(cfg.out, "cells", cell_name(strategy, student, seed))
    marker = storage.join(out, "cell.json")
    if storage.exists(marker) and json.loads(storage.read_text(marker)).get("status") == "done":
        return json.loads(storage.read_text(marker))
    t0, sel = time.time(), select_dir(cfg, strategy, seed)
    cell = {"cell": cell_name(strategy, student, seed), "strategy": to_dict(strategy), "student": to_dict(student),
            "seed": seed, "select": sel, "dir": out}
    try:
        storage.makedirs(out)
        cell["selection_digest"] = selection_digest(sel)
        train_out, eval_out = storage.join(out, "train"), storage.join(out, "eval")
        tcfg = build(TrainConfig, cell_train_dict(cfg, student, storage.join(sel, "selected.jsonl"), train_out, seed),
                     file=f"experiment cell {cell['cell']} (train)")
        if not storage.exists(storage.join(train_out, "train.json")):
            log.say(f"{cell['cell']}: train ...")
            run_training(tcfg)
        trained = json.loads(storage.read_text(storage.join(train_out, "train.json")))
        ecfg = build(EvalConfig, cell_eval_dict(cfg, student, trained["model"], eval_out),
                     file=f"experiment cell {cell['cell']} (eval)")
        if not storage.exists(storage.join(eval_out, "summary.json")):
            log.say(f"{cell['cell']}: eval ...")
            run_eval(ecfg)
        cell.update(status="done", train=train_out, eval=eval_out, judge=ecfg.judge_label,
                    summary=json.loads(storage.read_text(storage.join(eval_out, "summary.json"))))
    except Exception as e:  # noqa: BLE001 - a failed cell is recorded; the other cells go on
        cell.update(status="failed", error=f"{type(e).__name__}: {e}",
                    traceback=traceback.format_exc()[-2000:])
        log.say(f"{cell['cell']}: FAILED: {cell['error']}")
    cell["seconds"] = round(time.time() - t0, 1)
    storage.write_text(marker, jsonout.dumps(scrub_config(cell), indent=2))
    return cell


def run_experiment(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every selection, then every cell; then the results files. Returns experiment.json's dict.

    The results files of an earlier run are removed first (the cells and selections are kept, to be
    skipped): a rerun that fails leaves no results that are not its own."""
    from crowdselect.pipeline.experiment_results import RESULT_FILES, write_results
    from crowdselect.runtime.ray_setup import ensure_ray

    t0 = time.time()
    storage.makedirs(cfg.out)
    remove_outputs(cfg.out, (*RESULT_FILES, REPORT))
    storage.write_text(storage.join(cfg.out, "config.yaml"), yaml.safe_dump(scrub_config(to_dict(cfg)), sort_keys=False))
    crowd = open_crowd(cfg)
    against = cfg.decontaminate.against
    log.say(f"every selection is decontaminated against {', '.join(against)} (this experiment's eval sets unless "
            "`decontaminate:` says otherwise; `decontaminate: {against: []}` turns it off)" if against else
            "decontamination is off (`decontaminate.against` is empty): a selection may hold eval questions")
    ensure_ray(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.temp_dir)
    failed_select = {}
    for strategy in cfg.strategies:
        for seed in cfg.seeds:
            try:
                ensure_selection(cfg, crowd, strategy, seed)
            except Exception as e:  # noqa: BLE001 - recorded on the strategy's cells; the others go on
                failed_select[(strategy.name, seed)] = f"select: {type(e).__name__}: {e}"
                log.say(f"select {strategy.name} (seed {seed}) FAILED: {e}")
    todo = [(st, stu, seed) for st in cfg.strategies for stu in cfg.students for seed in cfg.seeds]
    cells = [_failed_cell(cfg, *t, failed_select[(t[0].name, t[2])]) if (t[0].name, t[2]) in failed_select
             else None for t in todo]
    runnable = [t for t, c in zip(todo, cells, strict=True) if c is None]
    with ThreadPoolExecutor(max_workers=cfg.parallel) as pool:
        done = iter(list(pool.map(lambda t: run_cell(cfg, *t), runnable)))
    cells = [c if c is not None else next(done) for c in cells]
    result = write_results(cfg, crowd.lineage, cells, round(time.time() - t0, 1))
    write_report(cfg.out)
    return result


def _failed_cell(cfg: ExperimentConfig, strategy, student, seed, error: str) -> dict[str, Any]:
    """A cell whose selection failed: recorded in its cell.json like any failed cell (a rerun retries it)."""
    name = cell_name(strategy, student, seed)
    out = storage.join(cfg.out, "cells", name)
    cell = {"cell": name, "strategy": to_dict(strategy), "student": to_dict(student), "seed": seed, "dir": out,
            "status": "failed", "error": error}
    storage.makedirs(out)
    storage.write_text(storage.join(out, "cell.json"), jsonout.dumps(scrub_config(cell), indent=2))
    return cell


def main(config_path: str, out: str | None = None, overrides: list[str] | None = None) -> int:
    """Entry of `crowdselect experiment`; ConfigError/UserError reach the CLI (exit 2)."""
    cfg = load_experiment_config(config_path, out, overrides)
    check_out_dir(cfg.out)  # before any cell runs
    result = run_experiment(cfg)
    n_done = sum(c["status"] == "done" for c in result["cells"])
    print(f"experiment: {n_done}/{len(result['cells'])} cells done in {result['seconds']:.0f}s; "
          f"results in {storage.join(cfg.out, 'results.md')}")
    return 0 if n_done == len(result["cells"]) else 1
