"""HF transformers generation with a real SmolLM2: the stage on a dict batch, and through Ray Data."""

import pytest

from crowdselect.core import columns as C
from crowdselect.generate import OUTPUT_COLUMNS, build_generate
from crowdselect.generate.hf_stage import HFGenerator
from crowdselect.generate.spec import GeneratorResources, GeneratorSpec

pytestmark = pytest.mark.slow
SMOL = "pkg:smollm2-135m-instruct"


def spec(resources=None, **kw):
    return GeneratorSpec(**{"name": "smol", "family": "smollm2", "size_b": 0.135, "model": SMOL, "backend": "hf",
                            "max_tokens": 8, "max_model_len": 96,
                            "resources": GeneratorResources(**{"batch_size": 2, **(resources or {})}), **kw})


def batch(texts):
    return {C.ID: [f"i{n}" for n in range(len(texts))], C.INSTRUCTION: texts, C.SHARD: ["s0"] * len(texts)}


@pytest.fixture(scope="module")
def generator():
    return HFGenerator(spec())  # the actor resolves the pkg: model on its own node


def test_stage_answers_in_input_order_and_records_too_long(generator):
    texts = ["What is the capital of France? Answer in one word.", "word " * 200, "Say hi.",
             "Count from one to three."]
    out = generator(batch(texts))
    assert list(out) == list(OUTPUT_COLUMNS)
    assert out[C.ID] == ["i0", "i1", "i2", "i3"] and out[C.INSTRUCTION] == texts
    assert out[C.RESPONSE][1] is None and out[C.ERROR][1].startswith("prompt too long: ")
    assert "the model's limit is 96" in out[C.ERROR][1]
    for i in (0, 2, 3):
        assert out[C.ERROR][i] is None and isinstance(out[C.RESPONSE][i], str)
        assert 0 < out[C.OUTPUT_TOKENS][i] <= 8 and out[C.PROMPT_TOKENS][i] > 5
    assert "Paris" in out[C.RESPONSE][0]


def test_greedy_answer_does_not_depend_on_the_batch(generator):
    alone = generator(batch(["Say hi."]))[C.RESPONSE][0]
    mixed = generator(batch(["Write a long sentence about the history of the Roman empire.", "Say hi."]))
    assert mixed[C.RESPONSE][1] == alone


def test_chat_template_from_config_is_used():
    template = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:"
    g = HFGenerator(spec(chat_template=template))
    text = g.tokenizer.decode(g._prompt_ids("two plus two?"))
    assert text == "Q: two plus two?\nA:"


def test_through_ray_data_actor_pool(ray_local):
    rows = [{C.ID: f"r{i}", C.INSTRUCTION: f"Give me a word that rhymes with {w}.", C.SHARD: f"s{i % 2}"}
            for i, w in enumerate(["cat", "dog", "sun"])]
    out = build_generate(spec({"replicas": 1}))(ray_local.data.from_items(rows)).take_all()
    assert sorted(r[C.ID] for r in out) == ["r0", "r1", "r2"]
    assert all(r[C.ERROR] is None and r[C.RESPONSE] for r in out)
    assert {r[C.ID]: r[C.SHARD] for r in out} == {"r0": "s0", "r1": "s1", "r2": "s0"}


def _kill_generator_actor() -> int:
    """SIGKILL the HFGenerator actor process among this test process's descendants; returns its pid."""
    import os
    import signal

    import psutil

    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "HFGenerator" in " ".join(proc.cmdline()):
                os.kill(proc.pid, signal.SIGKILL)
                return proc.pid
        except psutil.Error:
            continue
    raise AssertionError("no HFGenerator actor process found")


def test_crashed_actor_is_restarted_without_losing_or_duplicating_rows(ray_local, tmp_path):
    from crowdselect.pipeline.collect import Expected, collect
    from crowdselect.pipeline.store import StageStore

    rows = [{C.ID: f"r{i}", C.INSTRUCTION: f"Say the number {i}.", C.SHARD: f"s{i // 2}"} for i in range(6)]
    out = build_generate(spec({"batch_size": 1}, max_tokens=6))(ray_local.data.from_items(rows, override_num_blocks=6))
    store = StageStore.open(str(tmp_path / "g"), {}, redo_on_change=False)
    killed = []

    def kill_after_first_shard(table):
        if not killed:  # a real crash of the engine actor while later batches are queued on it
            killed.append(_kill_generator_actor())
        return table

    expected = {f"s{k}": [(f"r{2 * k}",), (f"r{2 * k + 1}",)] for k in range(3)}
    collect(out, Expected.of(expected), (C.ID,), store, kill_after_first_shard, workers=False, stall_s=None, progress=False,
            desc="crash test")
    assert killed
    for k in range(3):
        t = store.read_shard(f"s{k}")
        assert t.column(C.ID).to_pylist() == [f"r{2 * k}", f"r{2 * k + 1}"]
        assert all(t.column(C.RESPONSE).to_pylist())
