"""The shared HF causal-LM helper: pickle weights are refused unless the config allows them; micro-batches
isolate a failing row; error texts are scrubbed of secrets."""

import pytest

from crowdselect.core.config import ConfigError
from crowdselect.core.secrets import Secret
from crowdselect.runtime.causal_lm import ModelSource, check_weights, load_model, run_microbatches


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
