"""The shared HF causal-LM helper: pickle weights are refused unless the config allows them; micro-batches
isolate a failing row; error texts are scrubbed of secrets."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.core.secrets import Secret
from crowdselect.runtime.lm.batches import run_microbatches
from crowdselect.runtime.lm.load import ModelSource, load_model
from crowdselect.runtime.weights import check_weights


def tiny_model_folder(path, safetensors: bool):
    """A random 2-layer Llama in `path`, saved as safetensors or as a pickle (pytorch_model.bin)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    if safetensors:
        model.save_pretrained(path)
    else:
        path.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    return model


def test_pickle_only_folder_is_refused_unless_allowed(tmp_path):
    import torch

    folder = tmp_path / "bin-only"
    original = tiny_model_folder(folder, safetensors=False)
    with pytest.raises(ConfigError, match=r"holds only pickle weights \(pytorch_model.bin\).*allow_pickle_weights"):
        load_model(ModelSource(str(folder)), "cpu")
    loaded = load_model(ModelSource(str(folder), allow_pickle_weights=True), "cpu")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert torch.allclose(loaded(ids).logits, original.eval()(ids).logits)


def test_safetensors_folder_loads_by_default(tmp_path):
    folder = tmp_path / "safe"
    tiny_model_folder(folder, safetensors=True)
    check_weights(str(folder), allow_pickle=False)
    model = load_model(ModelSource(str(folder), dtype="float32"), "cpu")
    assert not model.training and next(model.parameters()).dtype.is_floating_point


def test_failing_row_costs_only_itself_and_its_error_is_scrubbed():
    key = Secret("tok-5f1e-private")

    def fn(items):
        if "bad" in items:
            raise RuntimeError(f"server said: Authorization: Bearer {key.get()}")
        return [len(x) for x in items]

    results, errors = run_microbatches(["a", "bad", "ccc", "dd"], [1, 3, 3, 2], max_rows=4, max_tokens=100,
                                       fn=fn, stage="judge")
    assert results == [1, None, 3, 2]
    assert errors[1] == "judge: RuntimeError: server said: Authorization: Bearer ***"
    assert errors[0] is errors[2] is errors[3] is None


def test_vllm_load_format_override_cannot_undo_the_rule(tmp_path):
    """engine_kwargs.load_format 'pt' / 'auto' (pickle) is refused unless allow_pickle_weights, for a
    generator, a reward model and the eval's model alike."""
    from crowdselect.eval.config import load_eval_config
    from crowdselect.pipeline.config import load_run_config

    run = tmp_path / "run.yaml"
    run.write_text("out: o\npool: {path: pool.jsonl}\ngenerators:\n"
                   "  - {name: a, family: f, size_b: 1, model: m1, engine_kwargs: {load_format: pt}}\n"
                   "  - {name: b, family: f, size_b: 2, model: m2}\n"
                   "rewards:\n  - {name: j, model: j, kind: judge, backend: vllm, engine_kwargs: {load_format: auto}}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: generators\[0\].engine_kwargs.load_format: 'pt' may load pickle"):
        load_run_config(str(run), None, [])
    with pytest.raises(ConfigError, match=r"rewards\[0\].engine_kwargs.load_format: 'auto' may load pickle"):
        load_run_config(str(run), None, ["generators[0].allow_pickle_weights=true"])
    cfg = load_run_config(str(run), None, ["generators[0].allow_pickle_weights=true",
                                           "rewards[0].engine_kwargs.load_format=safetensors"])
    assert cfg.generators[0].engine_kwargs == {"load_format": "pt"}
    ev = tmp_path / "eval.yaml"
    ev.write_text("model: {model: m, backend: vllm, engine_kwargs: {load_format: npcache}}\n"
                  "judge: {name: j, model: j, kind: judge}\nout: o\n")
    with pytest.raises(ConfigError, match=r"eval.yaml: model.engine_kwargs.load_format: 'npcache' may load pickle"):
        load_eval_config(str(ev))


def test_the_device_follows_the_actors_gpu_share(monkeypatch):
    """A 0-GPU actor never asks CUDA (Ray 2.60 leaves CUDA_VISIBLE_DEVICES unset for it, so CUDA would be a
    GPU Ray gave to another actor); a share > 0 is CUDA or a clear error; None (unplanned) is what torch sees."""
    import torch

    from crowdselect.core.errors import UserError
    from crowdselect.generate.spec import GeneratorResources, GeneratorSpec
    from crowdselect.reward.config import RewardSpec
    from crowdselect.runtime.lm.load import gpu_share, pick_device
    from crowdselect.runtime.resources import PoolResources

    visible = torch.cuda.is_available()

    def no_cuda_question():
        raise AssertionError("a 0-GPU stage asked torch about CUDA")

    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", no_cuda_question)
        assert pick_device(0) == "cpu" and pick_device(0.0) == "cpu"
    assert pick_device(None) == ("cuda" if visible else "cpu")
    if visible:
        assert pick_device(1) == "cuda"
    else:
        with pytest.raises(UserError, match=r"given 0.5 GPU\(s\) but torch .* sees no CUDA device"):
            pick_device(0.5)
    assert gpu_share(RewardSpec(name="r", model="m", resources=PoolResources(num_gpus=2))) == 2
    assert gpu_share(GeneratorSpec(name="g", family="f", size_b=1, resources=GeneratorResources(gpus_per_replica=0))) == 0
    assert gpu_share(ModelSource(model="m")) is None


def test_the_transformers_floor_has_the_dtype_argument():
    """`load_model` passes `dtype=` to from_pretrained, which transformers has since 4.56 (it was
    `torch_dtype` before, huggingface/transformers#39782): pyproject's floor must not admit older ones."""
    import re
    from importlib.metadata import version
    from pathlib import Path

    from packaging.version import Version

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    floors = [Version(v) for v in re.findall(r'"transformers>=([\d.]+)', text)]
    assert floors and min(floors) >= Version("4.56"), floors
    assert Version(version("transformers")) >= min(floors)
