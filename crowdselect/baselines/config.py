"""Wiring of the model-based baselines into Ray Data, from a `baselines:` config section.

    baselines:
      ifd:           {name: student, model: pkg:smollm2-135m-instruct, max_length: 1024}
      direct_score:  {name: judge, model: pkg:smollm2-135m-instruct}
      tags:          {name: tagger, model: pkg:smollm2-135m-instruct, max_new_tokens: 32}

Imported by crowdselect.select.config, so this module imports no stage or Ray code at import time.
Each entry is a RewardSpec (model, backend, lengths, Ray pool; `kind` is ignored). A baseline runs only when
its entry is set and its strategy is asked for: `add_baseline(ds, "ifd", cfg)` adds the `ifd` column to the
per-instruction rows (instruction, best_response).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.reward.config import RewardSpec, refuse_dry

# selection strategy -> (config field, column it needs)
STRATEGY_COLUMNS = {"ifd": ("ifd", C.IFD), "direct-score": ("direct_score", C.DIRECT_SCORE),
                    "tags": ("tags", C.TAGS)}


@dataclass
class BaselinesConfig:
    ifd: RewardSpec | None = None  # the student whose perplexities give IFD
    direct_score: RewardSpec | None = None  # the 0-5 judge
    tags: RewardSpec | None = None  # the tagging judge

    def validate(self) -> None:
        for which in ("ifd", "direct_score", "tags"):
            refuse_dry(getattr(self, which), which)


def stage_class(which: str) -> type:
    if which == "ifd":
        from crowdselect.baselines.ifd import IFDScorer

        return IFDScorer
    if which == "direct_score":
        from crowdselect.baselines.direct_score import DirectScorer

        return DirectScorer
    if which == "tags":
        from crowdselect.baselines.tags import Tagger

        return Tagger
    raise ValueError(f"unknown baseline {which!r}; known: ifd, direct_score, tags")


def baseline_spec(cfg: BaselinesConfig, which: str) -> RewardSpec:
    spec = getattr(cfg, which, None)
    if spec is None:
        raise ConfigError(f"baselines.{which}: the strategy needs a model here, e.g. "
                          f"baselines.{which}.model=pkg:smollm2-135m-instruct")
    return spec


def add_baseline(ds: Any, which: str, cfg: BaselinesConfig) -> Any:
    """Per-instruction rows -> + the baseline's column and its error column, on an actor pool."""
    from crowdselect.reward.wiring import pool_kwargs
    from crowdselect.runtime.cluster import planned

    spec = planned(baseline_spec(cfg, which))
    return ds.map_batches(stage_class(which), fn_constructor_kwargs={"spec": spec}, **pool_kwargs(spec))
