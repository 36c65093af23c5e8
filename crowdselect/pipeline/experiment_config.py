"""The config of `crowdselect experiment`: one crowd, the strategies to compare, the students, the seeds, and
the training and evaluation settings every cell shares. Settings only; validated before any work starts
(the shared `train:` and `eval:` sections are built into TrainConfig / EvalConfig for a sample cell).

    crowd:      {run: runs/quickstart}                    # a finished `crowdselect run` folder, or
                {input: [crowd.jsonl], config: crowd.yaml} # a crowd file and its crowd YAML (generators)
    strategies: [{name: crowdselect, weights: [1, 1, 2]}, {name: random}, {name: ifd, strategy: ifd, ...}]
    students:   [{name: smollm2, model: pkg:smollm2-135m-instruct}]
    k, clusters, seeds, train: {...TrainConfig keys}, eval: {...EvalConfig keys but model}, parallel, out,
    min_completeness (0.95: the share of a cell's evaluation that must be answered and judged to count)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from crowdselect.core.config import ConfigError, build, load_config
from crowdselect.runtime.ray_setup import RayConfig
from crowdselect.select.card import CardConfig
from crowdselect.select.config import STRATEGIES, EmbedderConfig, SelectionConfig, check_seed
from crowdselect.select.decontaminate import DecontaminateConfig, eval_sets, load_eval_texts


@dataclass
class CrowdSource:
    run: str | None = None  # a finished `crowdselect run` folder (its config.yaml and run.json)
    input: list[str] = field(default_factory=list)  # or crowd file(s): canonical / long / wide
    config: str | None = None  # the crowd YAML naming the generators (with `input`)
    format: str = "auto"

    def validate(self) -> None:
        if (self.run is None) == (not self.input):
            raise ConfigError("give `run:` (a finished crowdselect run folder) or `input:` + `config:`")
        if self.input and not self.config:
            raise ConfigError("config: a crowd file needs its crowd YAML (the generators)")


@dataclass
class StrategySpec:
    name: str  # row label in the results (e.g. crowdselect, random, difficulty-top-noquota)
    strategy: str | None = None  # one of crowdselect's strategies; default: the name
    weights: list[float] | None = None  # crowdselect's metric weights (difficulty, separability, stability)
    cluster: bool = True  # the per-cluster quota
    baselines: dict[str, Any] = field(default_factory=dict)  # ifd / direct-score / tags: the select config's

    def validate(self) -> None:
        if (self.strategy or self.name) not in STRATEGIES:
            raise ConfigError(f"strategy: unknown {self.strategy or self.name!r}; choose one of {', '.join(STRATEGIES)}")
        if self.weights is not None:  # select's own check, now rather than when the cell's selection runs
            SelectionConfig(weights=self.weights).validate()


@dataclass
class StudentSpec:
    name: str
    model: str  # HF id, folder or pkg: alias
    train: dict[str, Any] = field(default_factory=dict)  # overrides of the shared `train:` (e.g. lora)


@dataclass
class ExperimentConfig:
    crowd: CrowdSource
    strategies: list[StrategySpec]
    students: list[StudentSpec]
    k: int = 1000
    clusters: int = 10
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys shared by every cell
    eval: dict[str, Any] = field(default_factory=dict)  # EvalConfig keys shared by every cell (no `model.model`)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    baseline: str = "random"  # the row every delta is taken against
    parallel: int = 1  # cells at once (they are independent); 1 on a small machine
    # a cell's number is in the table only when this share of its expected turns (questions, pairs) were
    # answered and judged; an incomplete cell is marked and left out of the means and the bold
    min_completeness: float = 0.95
    note: str | None = None  # printed at the top of results.md (e.g. what the scale means)
    # every selection's; unset: against this experiment's own eval questions (`against: []` turns it off)
    decontaminate: DecontaminateConfig | None = None
    card: CardConfig = field(default_factory=CardConfig)  # the selections' dataset cards (license, pool, ...)
    out: str | None = None
    ray: RayConfig = field(default_factory=RayConfig)

    def validate(self) -> None:
        for key in ("strategies", "students", "seeds"):
            names = [getattr(x, "name", x) for x in getattr(self, key)]
            if not names:
                raise ConfigError(f"{key}: list at least one")
            if len(set(names)) != len(names):
                raise ConfigError(f"{key}: names must be unique, got {names}")
        if self.parallel < 1 or self.k < 1 or self.clusters < 1:
            raise ConfigError("k, clusters and parallel must be >= 1")
        if not 0.0 < self.min_completeness <= 1.0:
            raise ConfigError(f"min_completeness: must be in (0, 1], got {self.min_completeness}")
        for seed in self.seeds:
            check_seed("seeds", seed)
        if self.baseline not in [s.name for s in self.strategies]:
            raise ConfigError(f"baseline: {self.baseline!r} is not one of the strategies")


def cell_train_dict(cfg: ExperimentConfig, student: StudentSpec, data_path: str, out: str, seed: int) -> dict:
    """The TrainConfig dict of one cell: shared settings, the student's overrides, its data and folder."""
    data = copy.deepcopy(cfg.train)
    for section, values in student.train.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    data.setdefault("model", {})["name"] = student.model
    data.setdefault("data", {}).update({"path": [data_path], "seed": seed})
    data.update({"out": out, "seed": seed, "ray": {**data.get("ray", {}), **_ray(cfg)}})
    return data


def cell_eval_dict(cfg: ExperimentConfig, student: StudentSpec, model_dir: str, out: str) -> dict:
    """The EvalConfig dict of one cell; a pairwise section without a baseline compares with the base student."""
    data = copy.deepcopy(cfg.eval)
    data["model"] = {**data.get("model", {}), "model": model_dir, "name": student.name}
    pw = data.get("pairwise")
    if isinstance(pw, dict) and not pw.get("baseline") and not pw.get("baseline_answers"):
        answer = {k: v for k, v in data["model"].items() if k not in ("model", "name")}
        pw["baseline"] = {**answer, "model": student.model, "name": f"{student.name} (base)"}
    data.update({"out": out, "ray": {**data.get("ray", {}), **_ray(cfg)}})
    return data


def _ray(cfg: ExperimentConfig) -> dict:
    return {k: v for k, v in {"address": cfg.ray.address, "num_cpus": cfg.ray.num_cpus,
                              "temp_dir": cfg.ray.temp_dir}.items() if v is not None}


def load_experiment_config(path: str, out: str | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """YAML < `--out` < `key=value` overrides (`load_config`); the shared train/eval sections are checked on a sample cell."""
    from crowdselect.eval.config import EvalConfig
    from crowdselect.train.config import TrainConfig

    cfg = load_config(ExperimentConfig, path, list(overrides or []), flags={"out": out})
    if not cfg.out:
        raise ConfigError(f"{path}: out: no output directory (set `out:` or pass --out)")
    if cfg.decontaminate is None:  # its own eval questions, by default
        cfg.decontaminate = DecontaminateConfig(against=eval_sets(cfg.eval))
    load_eval_texts(cfg.decontaminate.against)  # a bad question file fails now, before any cell
    for student in cfg.students:
        build(TrainConfig, cell_train_dict(cfg, student, "selected.jsonl", cfg.out, cfg.seeds[0]),
              file=f"{path} (train:, student {student.name})")
        build(EvalConfig, cell_eval_dict(cfg, student, "model", cfg.out), file=f"{path} (eval:)")
    return cfg
