"""Pure pieces of the generate stages: per-row seeds, vLLM output normalisation, crowd assembly (doctests)."""

import doctest

import pandas as pd
import pytest

from crowdselect.core import columns as C
from crowdselect.crowd import assemble as crowd
from crowdselect.generate import common, openai_stage
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.generate.vllm_stage import ERROR_FIELD, Preprocess, normalize


@pytest.mark.parametrize("module", [common, openai_stage, crowd])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_vllm_rows_and_error_rows_become_one_schema():
    batch = pd.DataFrame({
        C.ID: ["a", "b"], C.INSTRUCTION: ["q1", "q2"], C.SHARD: ["s0", "s0"],
        C.RESPONSE: ["fine", None], C.ERROR: [None, None], C.PROMPT_TOKENS: [7, None],
        C.OUTPUT_TOKENS: [3, None], ERROR_FIELD: ["", "VLLMValidationError: too long"],
        "generated_text": [None, ""]})
    out = normalize(batch)
    assert list(out.columns) == list(common.OUTPUT_COLUMNS)
    assert out.to_dict("records") == [
        {C.ID: "a", C.INSTRUCTION: "q1", C.SHARD: "s0", C.RESPONSE: "fine", C.ERROR: None,
         C.PROMPT_TOKENS: 7, C.OUTPUT_TOKENS: 3},
        {C.ID: "b", C.INSTRUCTION: "q2", C.SHARD: "s0", C.RESPONSE: None,
         C.ERROR: "VLLMValidationError: too long", C.PROMPT_TOKENS: 0, C.OUTPUT_TOKENS: 0}]


def test_vllm_preprocess_seeds_each_row_from_its_id():
    spec = GeneratorSpec(name="g", family="f", size_b=1, model="m", max_tokens=9,
                         sampling={"temperature": 0.7, "seed": 5})
    pre = Preprocess(spec)
    a, b = pre({C.ID: "a", C.INSTRUCTION: "hi"}), pre({C.ID: "b", C.INSTRUCTION: "hi"})
    assert a["messages"] == [{"role": "user", "content": "hi"}]
    assert a["sampling_params"]["max_tokens"] == 9 and a["sampling_params"]["temperature"] == 0.7
    assert a["sampling_params"]["seed"] == common.row_seed(5, "a") != b["sampling_params"]["seed"]
    assert "seed" not in Preprocess(GeneratorSpec(name="g", family="f", size_b=1, model="m"))(
        {C.ID: "a", C.INSTRUCTION: "hi"})["sampling_params"]
