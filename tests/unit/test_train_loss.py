"""Loss normalisation of the training loop (train/loop.py `train_micro_batch`) on a tiny random Llama: by
token, the gradients of an optimizer step's micro-batches, on one or two workers, add up to those of one batch
holding every row (transformers' Trainer since 4.46); by sequence, each micro-batch weighs the same. The engine
stand-in does what DeepSpeed's engine does with a loss (deepspeed/runtime/engine.py `backward`: divide by
gradient_accumulation_steps unless scale_wrt_gas=False; the workers' gradients are averaged). Also the export's
`dtype: auto`, read from the base model's config."""

import pytest

from crowdselect.core import columns as C
from crowdselect.train.loop import response_tokens, train_micro_batch
from crowdselect.train.tokenize import IGNORE, collate


def tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))


class Engine:
    """DeepSpeed's engine as far as the loss goes: forward, backward with its gradient-accumulation scaling."""

    def __init__(self, model, grad_accum: int):
        self.model, self.grad_accum, self.device = model, grad_accum, "cpu"

    def __call__(self, **kwargs):
        return self.model(**kwargs)

    def backward(self, loss, scale_wrt_gas: bool = True):
        (loss / self.grad_accum if scale_wrt_gas else loss).backward()

    def step(self):
        pass


# rows of very different response lengths: a 2-token answer and a 9-token one
ROWS = [([1, 2, 3, 4, 5], [IGNORE, IGNORE, IGNORE, 4, 5]),
        ([6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], [IGNORE, IGNORE, IGNORE, 9, 10, 11, 12, 13, 14, 15, 16, 17]),
        ([3, 3, 3, 20, 21, 22], [IGNORE, IGNORE, IGNORE, 20, 21, 22]),
        ([5, 4, 30, 31], [5, 4, 30, 31])]  # a label at position 0 is never a target


def batch(rows):
    return collate({C.INPUT_IDS: [r[0] for r in rows], C.LABELS: [r[1] for r in rows]}, pad_id=0)


def grads(model):
    import torch

    out = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
    model.zero_grad()
    return out


def test_token_normalisation_equals_one_batch_of_every_row():
    import torch

    model = tiny_llama()
    model(**batch(ROWS)).loss.backward()  # one batch: the mean over all its response tokens
    reference = grads(model)
    steps = [batch([r]) for r in ROWS]
    tokens = sum(response_tokens(b[C.LABELS]) for b in steps)
    assert tokens == 2 + 9 + 3 + 3  # labels shift by one: position 0 of a row is never a target
    engine = Engine(model, grad_accum=4)  # one worker, four micro-batches
    logged = [train_micro_batch(engine, b, float(tokens), world=1) for b in steps]
    assert torch.allclose(grads(model), reference, atol=1e-6)
    # two workers with two micro-batches each: DeepSpeed averages the workers' gradients
    engine = Engine(model, grad_accum=2)
    per_worker = []
    for part in (steps[:2], steps[2:]):
        for b in part:
            train_micro_batch(engine, b, float(tokens), world=2)
        per_worker.append(grads(model))
    assert torch.allclose((per_worker[0] + per_worker[1]) / 2, reference, atol=1e-6)
    # the logged loss is the token mean of the step
    assert sum(n for n, _ in logged) / sum(w for _, w in logged) == pytest.approx(
        model(**batch(ROWS)).loss.item(), rel=1e-5)


def test_sequence_normalisation_weighs_each_micro_batch_the_same():
    import torch

    model = tiny_llama()
    steps = [batch([r]) for r in ROWS]
    for b in steps:
        (model(**b).loss / len(steps)).backward()
    reference = grads(model)
    engine = Engine(model, grad_accum=4)
    logged = [train_micro_batch(engine, b, None, world=1) for b in steps]
    assert torch.allclose(grads(model), reference, atol=1e-6)
    assert [w for _, w in logged] == [1.0] * 4


def test_export_dtype_auto_is_the_base_models(tmp_path):
    import json

    from crowdselect.train.config import TrainConfig
    from crowdselect.train.export import export_dtype

    conf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
            "num_attention_heads": 2, "num_hidden_layers": 1, "num_key_value_heads": 1, "vocab_size": 32}
    (tmp_path / "bf16").mkdir()
    (tmp_path / "bf16" / "config.json").write_text(json.dumps({**conf, "dtype": "bfloat16"}))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "config.json").write_text(json.dumps(conf))
    cfg = TrainConfig(out="o")
    assert export_dtype(cfg, str(tmp_path / "bf16")) == "bfloat16"  # not the float32 it is merged in
    assert export_dtype(cfg, str(tmp_path / "none")) == "float32"
    cfg.export.dtype = "float16"
    assert export_dtype(cfg, str(tmp_path / "bf16")) == "float16"
