"""The dry backend (`backend: dry`): deterministic answers and rewards with no model; configs need no `model`."""

import math

import numpy as np
import pytest

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError, build
from crowdselect.eval.config import EvalConfig
from crowdselect.generate import model_id
from crowdselect.generate.dry_stage import DryGenerator, dry_answer
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.pipeline.config import RunConfig
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.dry import DryScorer
from crowdselect.reward.wiring import stage_class
from crowdselect.select.config import SelectConfig


def gen(name="g", **kw):
    return build(GeneratorSpec, {"name": name, "family": "f", "size_b": 1, "backend": "dry", **kw}, file="t.yaml")


def test_answers_depend_on_generator_and_id_only():
    spec = gen(max_tokens=12)
    batch = {C.ID: np.array(["b", "a"]), C.INSTRUCTION: np.array(["two words", "x"]), C.SHARD: np.array(["s", "s"])}
    out = DryGenerator(spec)(batch)
    alone = DryGenerator(spec)({k: v[1:] for k, v in batch.items()})
    assert out[C.RESPONSE][1] == alone[C.RESPONSE][0] == dry_answer("g", "a", 12)
    assert [len(r.split()) for r in out[C.RESPONSE]] == [12, 12] and out[C.ERROR] == [None, None]
    assert out[C.PROMPT_TOKENS] == [2, 1] and out[C.OUTPUT_TOKENS] == [12, 12]
    assert DryGenerator(gen("other", max_tokens=12))(batch)[C.RESPONSE] != out[C.RESPONSE]
    assert model_id(spec) == "dry" and model_id(gen(model="Qwen/Qwen2.5-7B-Instruct")) == "Qwen/Qwen2.5-7B-Instruct"


def test_rewards_depend_on_the_row_and_keep_missing_answers():
    judge = build(RewardSpec, {"name": "rm", "kind": "judge", "backend": "dry"}, file="t.yaml")
    assert stage_class(judge) is DryScorer
    batch = {C.ID: np.array(["a", "a", "b"]), C.MODEL: np.array(["g", "h", "g"]),
             C.RESPONSE: np.array(["yes", "yes", None], dtype=object), C.INSTRUCTION: np.array(["x", "x", "y"])}
    out = DryScorer(judge)(batch)
    rewards = out[C.REWARD]
    assert 1 <= rewards[0] <= 10 and rewards[0] != rewards[1] and math.isnan(rewards[2])
    assert list(out[C.REWARD_ERROR]) == [None, None, "no response"] and list(out[C.REWARD_MODEL]) == ["rm"] * 3
    again = DryScorer(judge)({k: v[:1] for k, v in batch.items()})
    assert again[C.REWARD][0] == rewards[0]
    classifier = build(RewardSpec, {"name": "rm", "backend": "dry"}, file="t.yaml")
    assert -4 <= DryScorer(classifier)(batch)[C.REWARD][0] <= 4


def test_dry_needs_no_model_and_others_still_do():
    data = {"pool": {"path": ["p.jsonl"]}, "out": "o", "rewards": [{"name": "rm", "backend": "dry"}],
            "generators": [{"name": "a", "family": "f", "size_b": 1, "backend": "dry"},
                           {"name": "b", "family": "f", "size_b": 2, "backend": "dry"}]}
    cfg = build(RunConfig, data, file="run.yaml")
    assert cfg.rewards[0].model is None
    data["generators"][1]["backend"] = "hf"
    with pytest.raises(ConfigError, match=r"run.yaml: generators\[1\].model: .* is required"):
        build(RunConfig, data, file="run.yaml")
    with pytest.raises(ConfigError, match=r"run.yaml: rewards\[0\].model: reward 'rm' needs"):
        build(RewardSpec, {"name": "rm"}, file="run.yaml", key="rewards[0]")


def test_dry_is_refused_where_a_model_must_score():
    with pytest.raises(ConfigError, match=r"baselines.ifd.backend: dry is for the reward models of `crowdselect run`"):
        build(SelectConfig, {"generators": [{"name": "a", "family": "f", "size_b": 1}],
                             "baselines": {"ifd": {"name": "s", "backend": "dry"}}}, file="crowd.yaml")
    with pytest.raises(ConfigError, match=r"judge.backend: dry"):
        build(EvalConfig, {"model": {"model": "m"}, "judge": {"name": "j", "kind": "judge", "backend": "dry"}},
              file="eval.yaml")
