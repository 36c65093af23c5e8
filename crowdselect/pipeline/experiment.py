"""`crowdselect experiment CONFIG.yaml [--out DIR] [key=value ...]`: compare selection strategies by the
students they train. Each cell (strategy x student x seed) is select -> train -> eval through the same code
as the three commands (`run_select`, `run_training`, `run_eval`), in its own folder:

    DIR/select/<strategy>__seed<s>/          the selection (shared by the students of that strategy and seed)
    DIR/cells/<strategy>__<student>__seed<s>/{train/, eval/, cell.json}
    DIR/results.csv  results.md  results.png  experiment.json  (crowdselect/pipeline/experiment_results.py)

Every step (a selection, a cell's training, its eval) is keyed by a digest of everything that decides its
output (crowdselect/pipeline/cells.py): a rerun skips a finished step with the same settings, resumes an
unfinished one (training from its last checkpoint, an eval from what it answered and judged), and redoes a
step whose settings changed, saying which keys did — and so every step after it. An eval whose judge requests
failed asks them again on the next rerun. A failed cell is recorded (cell.json: status failed, the error) and
the others go on. Cells run `parallel` at a time (threads sharing one Ray).
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
from crowdselect.pipeline import cells
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


def select_config(cfg: ExperimentConfig, crowd: Crowd, strategy: StrategySpec, seed: int):
    """The SelectConfig of one strategy and seed (built, so its defaults are in its settings)."""
    from crowdselect.select.config import SelectConfig

    selection = {"k": cfg.k, "clusters": cfg.clusters, "strategy": strategy.strategy or strategy.name,
                 "cluster": strategy.cluster, "seed": seed}
    if strategy.weights is not None:
        selection["weights"] = strategy.weights
    data = {"generators": crowd.generators, "input": crowd.input, "selection": selection,
            "embedder": to_dict(cfg.embedder), "baselines": strategy.baselines, "ray": to_dict(cfg.ray),
            "out": select_dir(cfg, strategy, seed), "decontaminate": to_dict(cfg.decontaminate),
            "card": selection_card(cfg, crowd)}
    return build(SelectConfig, data, file=f"experiment strategy {strategy.name}")


def ensure_selection(cfg: ExperimentConfig, crowd: Crowd, strategy: StrategySpec, seed: int) -> str:
    """Run (or keep, when done with the same settings and crowd) one strategy's selection; returns its folder."""
    from crowdselect.select.job import run_select

    select_cfg = select_config(cfg, crowd, strategy, seed)
    step = cells.Step(f"select {strategy.name} (seed {seed})", select_cfg.out,
                      cells.select_settings(select_cfg, list(crowd.input["path"])), "selected.jsonl")
    if not cells.open_step(step):
        log.say(f"select {strategy.name} (seed {seed}) ...")
        run_select(select_cfg)
        cells.finish_step(step)
    return select_cfg.out


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
    """Train and evaluate one cell (its selection exists), each step kept or redone by its settings; returns
    and writes cell.json (left as it is when every step was kept)."""
    out = storage.join(cfg.out, "cells", cell_name(strategy, student, seed))
    marker = storage.join(out, "cell.json")
    t0, sel = time.time(), select_dir(cfg, strategy, seed)
    cell = {"cell": cell_name(strategy, student, seed), "strategy": to_dict(strategy), "student": to_dict(student),
            "seed": seed, "select": sel, "dir": out}
    try:
        storage.makedirs(out)
        cell["selection_digest"] = selection_digest(sel)
        cell.update(train_and_eval(cfg, cell, student, seed, sel, out))
        old = json.loads(storage.read_text(marker)) if storage.exists(marker) else {}
        if not cell.pop("ran") and old.get("status") == "done" and old.get("steps") == cell["steps"]:
            return old
    except Exception as e:  # noqa: BLE001 - a failed cell is recorded; the other cells go on
        cell.update(status="failed", error=f"{type(e).__name__}: {e}",
                    traceback=traceback.format_exc()[-2000:])
        log.say(f"{cell['cell']}: FAILED: {cell['error']}")
    cell["seconds"] = round(time.time() - t0, 1)
    storage.write_text(marker, jsonout.dumps(scrub_config(cell), indent=2))
    return cell


def train_and_eval(cfg: ExperimentConfig, cell: dict[str, Any], student: StudentSpec, seed: int, sel: str,
                   out: str) -> dict[str, Any]:
    """The cell's train and eval steps; the fields they add to cell.json (`ran`: whether a step ran)."""
    from crowdselect.eval.config import EvalConfig
    from crowdselect.eval.job import run_eval
    from crowdselect.train.config import TrainConfig
    from crowdselect.train.job import run_training

    name, selected = cell["cell"], storage.join(sel, "selected.jsonl")
    train_out, eval_out = storage.join(out, "train"), storage.join(out, "eval")
    if cfg.eval.get("proxy"):
        proxy = cfg.eval["proxy"]
        cells.check_held_out(selected, proxy["instructions"], proxy.get("limit"), cell["strategy"]["name"])
    tcfg = build(TrainConfig, cell_train_dict(cfg, student, selected, train_out, seed),
                 file=f"experiment cell {name} (train)")
    train = cells.Step(f"{name}: train", train_out, cells.train_settings(tcfg, selected), "train.json")
    ran = not cells.open_step(train)
    if ran:
        log.say(f"{name}: train ...")
        run_training(tcfg)
        cells.finish_step(train)
    trained = json.loads(storage.read_text(storage.join(train_out, "train.json")))
    ecfg = build(EvalConfig, cell_eval_dict(cfg, student, trained["model"], eval_out),
                 file=f"experiment cell {name} (eval)")
    evaluate = cells.Step(f"{name}: eval", eval_out, cells.eval_step_settings(ecfg, train.digest), "summary.json")
    done = cells.open_step(evaluate)
    summary_path = storage.join(eval_out, "summary.json")
    failed = cells.failed_judge_requests(json.loads(storage.read_text(summary_path))) if done else 0
    if failed:
        log.say(f"{name}: eval: asking the {failed} failed judge requests again")
    if not done or failed:
        log.say(f"{name}: eval ...")
        run_eval(ecfg)
        cells.finish_step(evaluate)
        ran = True
    return {"status": "done", "train": train_out, "eval": eval_out, "judge": ecfg.judge_label, "ran": ran,
            "steps": {"select": json.loads(storage.read_text(storage.join(sel, cells.STEP_FILE)))["digest"],
                      "train": train.digest, "eval": evaluate.digest},
            "schedule": {k: trained["data"].get(k) for k in ("warmup_steps", "total_steps", "steps")},
            "summary": json.loads(storage.read_text(summary_path))}


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
    n_low = len(result["incomplete_cells"])
    below = f", {n_low} below the completeness threshold (a rerun asks failed judge requests again)" if n_low else ""
    print(f"experiment: {n_done}/{len(result['cells'])} cells done in {result['seconds']:.0f}s{below}; "
          f"results in {storage.join(cfg.out, 'results.md')}")
    return 0 if n_done == len(result["cells"]) else 1
