"""The stage layer's fixtures: a small real sequence-classification reward model, made once per session."""

import pytest


@pytest.fixture(scope="session")
def reward_model_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct's transformer with a fresh one-output score head (num_labels=1, torch seed 0),
    saved as a safetensors HF folder (LlamaForSequenceClassification, float32) with its tokenizer. Its scores
    mean nothing; they are the same on every run, and HF and vLLM load the very same weights."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crowdselect.runtime.models import resolve_model

    src = resolve_model("pkg:smollm2-135m-instruct")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, dtype=torch.float32)
    out = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(out)  # safetensors
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return str(out)
