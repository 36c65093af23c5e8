"""The config of `crowdselect run`: pool → crowd of generators → reward models → selection (→ training).

One YAML file fills `RunConfig`; `key=value` overrides from the command line go through the same
builder, so every error names the file and the dotted key (`quickstart.yaml: generators[1].size_b: ...`).
The generators, embedder and selection settings are the very dataclasses `crowdselect select` uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.core.config import ConfigError, build, load_config
from crowdselect.core.rejects import bad_rows_policy
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.reward.config import RewardSpec, check_reward_specs, primary_reward
from crowdselect.runtime.ray_setup import RayConfig
from crowdselect.select.card import CardConfig
from crowdselect.select.config import EmbedderConfig, SelectionConfig, check_stability_sizes
from crowdselect.select.decontaminate import DecontaminateConfig

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class PoolConfig:
    """Where the instructions come from (see `crowdselect.pool.read` for the formats)."""

    path: list[str] = field(default_factory=list)  # files or directories
    format: Literal["auto", "plain", "sharegpt", "alpaca", "messages"] = "auto"
    id_field: str | None = "id"  # None or missing in a row: a content hash of the instruction
    instruction_field: str = "instruction"  # plain and alpaca rows
    on_bad_rows: Literal["fail", "quarantine", "skip"] = "fail"  # skip: deprecated name of quarantine
    limit: int | None = None  # read at most this many accepted rows
    shard_size: int = 256  # instructions per shard: the unit of resume

    def validate(self) -> None:
        self.on_bad_rows = bad_rows_policy(self.on_bad_rows)
        if not self.path:
            raise ConfigError("path: give at least one pool file or directory")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size: must be >= 1, got {self.shard_size}")


@dataclass
class RunConfig:
    pool: PoolConfig
    generators: list[GeneratorSpec]
    rewards: list[RewardSpec] = field(default_factory=list)  # exactly one `primary: true` drives the metrics
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)  # select's; empty: off
    card: CardConfig = field(default_factory=CardConfig)  # the selection's dataset card (pool, reward: filled in)
    ray: RayConfig = field(default_factory=RayConfig)
    # packed: model stages that fit the cluster together run side by side (crowdselect.pipeline.plan);
    # sequential: one after another, in config order. Both write the same bytes.
    schedule: Literal["packed", "sequential"] = "packed"
    # who writes the generate and reward shards (crowdselect.pipeline.collect): the Ray workers, or the driver;
    # auto: workers for an s3:// or gs:// `out`, the driver for a local folder; set workers for a folder every
    # node mounts (NFS). Both write the same bytes.
    shard_writer: Literal["auto", "workers", "driver"] = "auto"
    # a model stage that returns no row for this long fails with the shards left named (an engine hung on an
    # out-of-memory, replicas that cannot be placed); 0: wait forever. Give more for huge models' first load.
    stall_timeout_s: float = 3600.0
    # optional fine-tuning on the selection: a `crowdselect train` config (crowdselect.train.config.TrainConfig);
    # data.path defaults to DIR/select/selected.jsonl and out to DIR/train
    train: dict[str, Any] | None = None
    out: str | None = None
    progress: bool = True  # progress bars (tqdm per stage, Ray Data's per operator)

    def validate(self) -> None:
        _check_names("generators", [g.name for g in self.generators])
        if len(self.generators) < 2:
            raise ConfigError(f"generators: a crowd needs at least 2 generators, got {len(self.generators)}")
        for i, g in enumerate(self.generators):
            _check_generator(i, g)
        check_stability_sizes(self.generators, self.selection)  # now, not after the generation
        if not self.rewards:
            raise ConfigError("rewards: give at least one reward model")
        _check_names("rewards", [r.name for r in self.rewards])
        if not self.stall_timeout_s >= 0:
            raise ConfigError(f"stall_timeout_s: must be >= 0 seconds (0: wait forever), got {self.stall_timeout_s}")

    @property
    def metric_reward(self) -> str:
        """Name of the reward that drives difficulty, separability and stability (the primary one)."""
        return primary_reward(self.rewards).name


def _check_names(key: str, names: list[str]) -> None:
    for i, n in enumerate(names):
        if not SAFE_NAME.match(n):
            raise ConfigError(f"{key}[{i}].name: {n!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{key}: name {dup[0]!r} is listed twice")


def _check_generator(i: int, g: GeneratorSpec) -> None:
    key = f"generators[{i}]"
    if g.backend == "openai":
        if not g.base_url:
            raise ConfigError(f"{key}.base_url: the openai backend needs the server's base URL (…/v1)")
        if not g.model:
            raise ConfigError(f"{key}.model: the openai backend needs the served model name")
    elif not g.model and g.backend != "dry":
        raise ConfigError(f"{key}.model: a HF hub id, local folder or pkg: alias is required")
    if g.max_tokens < 1:
        raise ConfigError(f"{key}.max_tokens: must be >= 1, got {g.max_tokens}")
    bad = sorted(set(g.sampling) - SAMPLING_KEYS)
    if bad:
        raise ConfigError(f"{key}.sampling.{bad[0]}: unknown sampling key (known: {', '.join(sorted(SAMPLING_KEYS))})")


# Sampling keys every backend understands (vLLM SamplingParams, HF generate, OpenAI chat completions).
SAMPLING_KEYS = {"temperature", "top_p", "top_k", "seed", "repetition_penalty", "presence_penalty",
                 "frequency_penalty", "stop", "min_p"}


def load_run_config(path: str, out: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """YAML file < `--out` < `key=value` overrides (`load_config`); validated before any work starts."""
    cfg = load_config(RunConfig, path, list(overrides or []), flags={"out": out})
    check_reward_specs(cfg.rewards, file=path)
    if not cfg.out:
        raise ConfigError(f"{path}: out: give the run directory (in the file or with --out DIR)")
    if cfg.train is not None:
        train_config(cfg, file=path)  # validated now, before any work
    return cfg


def train_config(cfg: RunConfig, file: str):
    """The run's `train:` section as a TrainConfig reading this run's selection; errors name `train.KEY`."""
    from crowdselect.core import storage
    from crowdselect.train.config import TrainConfig

    data = dict(cfg.train or {})
    data.setdefault("data", {})
    if isinstance(data["data"], dict):
        data["data"] = {"path": [storage.join(cfg.out, "select", "selected.jsonl")], **data["data"]}
    data.setdefault("out", storage.join(cfg.out, "train"))
    return build(TrainConfig, data, file=file, key="train")
