"""The packaged Qwen2.5-Coder-Instruct models: joined from their pinned part packages, verified (size, sha256,
GGUF header), converted once, and loaded by transformers, which answers a simple question correctly."""

from __future__ import annotations

import pytest

from crowdselect.runtime import models

pytestmark = pytest.mark.slow
CASES = [("qwen2.5-coder-0.5b-instruct", models.QWEN_05B), ("qwen2.5-coder-1.5b-instruct", models.QWEN_15B)]


@pytest.mark.parametrize(("alias", "spec"), CASES, ids=[c[0] for c in CASES])
def test_join_verify_and_load(alias, spec):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    module, member = models.ALIASES[alias]
    gguf = models._gguf_file(alias, module, member)  # joins (and verifies) on first use, then reuses
    assert gguf.stat().st_size == spec.size
    models.verify_gguf(spec, gguf)  # recomputes the sha256 of the cached file and reads its header
    assert models.gguf_header(gguf) == ("qwen2", spec.header_name)

    path = models.resolve_model("pkg:" + alias)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    assert model.config.model_type == "qwen2"
    text = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France? One word."}],
                                   tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
    # the turn ends with the chat template's end token, so answers stop at the end of the turn
    assert tok.convert_ids_to_tokens(model.generation_config.eos_token_id if isinstance(
        model.generation_config.eos_token_id, int) else model.generation_config.eos_token_id[0]) in (
        "<|im_end|>", "<|endoftext|>")
