"""Real fine-tuning runs: Ray Train TorchTrainer, 2 gloo workers, DeepSpeed ZeRO-2 / ZeRO-3, PEFT LoRA,
SmolLM2-135M-Instruct (from the PyPI-shipped GGUF), on a tiny repeated set. CPU, fp32 for speed except
where noted. Three training runs are shared by all assertions:

    zero2         the README's train path: examples/train.yaml (paper settings: ZeRO-2 full fine-tuning,
                  warmup 150 steps, cosine) at test scale (8 rows, 1 epoch = 4 steps, lr 1e-4, accumulation 1),
                  checkpoints at steps 2 and 4, exports the model; OUT is relative, as on the README's
                  command line (Ray Train workers run in another working directory)
    zero2_resumed resume_from zero2's step-2 checkpoint (mid-epoch), runs steps 3-4 again: same losses
    zero3_lora    ZeRO-3 + LoRA in bf16 with gradient accumulation 2, 2 steps, exports merged (by the run)
                  and unmerged (by the test)
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from crowdselect.core import columns as C
from crowdselect.core.config import build
from crowdselect.runtime.models import resolve_model
from crowdselect.train.config import TrainConfig, load_train_config
from crowdselect.train.export import consolidated_weights, export_model
from crowdselect.train.job import run_training
from crowdselect.train.loop import STATE_FILE
from crowdselect.train.student import is_adapter_key
from crowdselect.train.tokenize import ChatTokenizer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
# examples/train.yaml at test scale: one epoch of 8 rows on 2 workers is 4 steps; lr 1e-4 so that 4 steps
# visibly fit the answers; fp32 (this CPU has no bf16 units); short rows
TEST_SCALE = ["deepspeed.precision=fp32", "optim.epochs=1", "optim.grad_accum=1", "optim.lr=1e-4",
              "data.max_length=128"]

QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Name a primary color.", "Red is a primary color."),
      ("What is 2 + 3?", "2 + 3 equals 5."),
      ("Translate 'hello' to Spanish.", "'Hello' in Spanish is 'hola'.")]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """8 rows shaped like the selection's selected.jsonl (4 pairs, each twice)."""
    path = tmp_path_factory.mktemp("data") / "selected.jsonl"
    rows = [{C.ID: f"r{i}", C.INSTRUCTION: q, C.RESPONSE: a, C.MODEL: "m", C.REWARD: 1.0, C.CLUSTER: 0,
             C.SCORE: 0.5, C.MESSAGES: [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for i, (q, a) in enumerate(QA * 2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def make_cfg(data_file: str, out: Path, **sections) -> TrainConfig:
    base = {"data": {"path": [data_file], "max_length": 128},
            "optim": {"lr": 1e-4, "warmup_steps": 0, "epochs": 1, "grad_accum": 1},
            "deepspeed": {"zero_stage": 2, "precision": "fp32"},
            "scaling": {"workers": 2}, "out": str(out)}
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return build(TrainConfig, base, file="test")


def read_log(out: str) -> list[dict]:
    return [json.loads(x) for x in Path(out, "train_log.jsonl").read_text().splitlines()]


def example_run(data_file: str, folder: Path, *overrides: str) -> tuple[TrainConfig, dict]:
    """`crowdselect train examples/train.yaml data.path=... --out run` from inside `folder` (OUT relative)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        cfg = load_train_config(str(ROOT / "examples" / "train.yaml"), "run",
                                [f"data.path={data_file}", *TEST_SCALE, *overrides])
        return cfg, run_training(cfg)


@pytest.fixture(scope="module")
def zero2(ray_local, data_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero2")
    cfg, summary = example_run(data_file, folder, "checkpoint.every_steps=2")
    assert cfg.deepspeed.zero_stage == 2 and cfg.optim.warmup_steps == 150 and not cfg.lora.enabled  # the example's
    return {**summary, "folder": folder, "lr": cfg.optim.lr}


@pytest.fixture(scope="module")
def zero2_resumed(zero2, data_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero2_resumed")
    # A checkpoint is resumed from inside the run's own storage (DeepSpeed unpickles it): copy the trusted one in.
    step2 = folder / "run" / "trusted" / "checkpoint_step2"
    shutil.copytree(Path(zero2["checkpoint"]).parent / "checkpoint_step2", step2)
    return example_run(data_file, folder, f"checkpoint.resume_from={step2}", "export.enabled=false")[1]


@pytest.fixture(scope="module")
def zero3_lora(ray_local, data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero3_lora")
    cfg = make_cfg(data_file, out, optim={"lr": 5e-3, "epochs": 1, "grad_accum": 2},
                   deepspeed={"zero_stage": 3, "precision": "bf16"},
                   lora={"enabled": True, "rank": 8, "alpha": 16, "dropout": 0.0,
                         "target_modules": ["q_proj", "v_proj"]},
                   export={"dtype": "float32"})
    return cfg, run_training(cfg)


def test_zero2_trains_logs_and_checkpoints(zero2):
    assert zero2["steps"] == 4 and zero2["started_at_step"] == 0
    assert Path(zero2["out"]).resolve() == (zero2["folder"] / "run").resolve()  # the relative OUT, not the workers'
    log = read_log(zero2["out"])
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["tokens_per_s"] > 0 and r["mfu"] > 0 and r["lr"] > 0 for r in log)
    assert log[-1]["loss"] < 0.5 * log[0]["loss"], log  # loss falls
    for step in (2, 4):
        state = json.loads(Path(zero2["checkpoint"]).parent.joinpath(f"checkpoint_step{step}", STATE_FILE).read_text())
        assert state["step"] == step and state["tag"] == f"step{step}"
    report = zero2["data"]
    assert (report["rows_read"], report["rows_used"], report["total_steps"]) == (8, 8, 4)
    # the example's warmup (150 steps) is longer than the run: scaled to 10% of it, said, and the lr is reached
    assert report["warmup_steps"] == 0
    assert report["schedule_notice"] == "optim.warmup_steps 150 >= 4 total steps: using 0 (10% of the run)"
    assert max(r["lr"] for r in log) == pytest.approx(zero2["lr"])


def test_zero2_moves_the_weights(zero2):
    from safetensors.torch import load_file

    base = load_file(str(Path(resolve_model("pkg:smollm2-135m-instruct"), "model.safetensors")))
    trained = load_file(str(Path(zero2["model"], "model.safetensors")))
    changed = [k for k in base if k in trained and not base[k].to(trained[k].dtype).equal(trained[k])]
    assert len(changed) > len(base) // 2, f"only {len(changed)} of {len(base)} tensors changed"


def test_zero2_resume_continues_from_step_n_with_optimizer_state(zero2, zero2_resumed):
    assert zero2_resumed["started_at_step"] == 2 and zero2_resumed["steps"] == 4
    log = read_log(zero2_resumed["out"])
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # steps 1-2 carried over from the checkpoint's log
    # AdamW's own step counter continues (a fresh optimizer would say 1) and so does the schedule
    assert [r["optimizer_step"] for r in log[2:]] == [3, 4]
    assert log[2]["lr"] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 2 / 4)))
    # weights, optimizer moments, schedule and data position restored: steps 3-4 repeat the uninterrupted run
    uninterrupted = read_log(zero2["out"])
    for resumed, straight in zip(log[2:], uninterrupted[2:], strict=True):
        assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
        assert resumed["grad_norm"] == pytest.approx(straight["grad_norm"], rel=1e-4)


def test_exported_folder_loads_and_generates(zero2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = zero2["model"]
    info = json.loads(Path(folder, "crowdselect_export.json").read_text())
    assert info["step"] == 4 and not info["lora"]
    assert Path(folder, "model.safetensors").exists() and Path(folder, "chat_template.jinja").exists()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": QA[0][0]}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    # it learnt the training answers: their loss is well below the base model's
    base = AutoModelForCausalLM.from_pretrained(resolve_model("pkg:smollm2-135m-instruct")).eval()
    assert answer_loss(model, folder) < 0.5 * answer_loss(base, folder)


def answer_loss(model, tokenizer_folder: str) -> float:
    """Mean loss on the assistant tokens of the training pairs."""
    import torch

    tok = ChatTokenizer(tokenizer_folder, max_length=128)
    losses = []
    for q, a in QA:
        ex = tok([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ex[C.INPUT_IDS]]), labels=torch.tensor([ex[C.LABELS]]))
        losses.append(out.loss.item())
    return sum(losses) / len(losses)


def test_zero3_lora_loss_falls(zero3_lora):
    from transformers import AutoModelForCausalLM

    _, summary = zero3_lora
    log = read_log(summary["out"])
    assert [r["step"] for r in log] == [1, 2] and [r["optimizer_step"] for r in log] == [1, 2]
    assert log[-1]["loss"] < log[0]["loss"], log
    merged = AutoModelForCausalLM.from_pretrained(summary["model"]).eval()
    base = AutoModelForCausalLM.from_pretrained(resolve_model("pkg:smollm2-135m-instruct")).eval()
    assert answer_loss(merged, summary["model"]) < 0.9 * answer_loss(base, summary["model"])


def test_lora_changes_only_adapter_weights(zero3_lora):
    import torch
    from safetensors.torch import load_file

    _, summary = zero3_lora
    weights, _ = consolidated_weights(summary["checkpoint"])
    base = load_file(str(Path(resolve_model("pkg:smollm2-135m-instruct"), "model.safetensors")))
    adapters = {k: v for k, v in weights.items() if is_adapter_key(k)}
    frozen = {k: v for k, v in weights.items() if not is_adapter_key(k)}
    assert len(adapters) == 2 * 2 * 30  # (q_proj, v_proj) x (lora_A, lora_B) x 30 layers
    # lora_B starts at zero: every one moved
    assert all(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)
    # the base weights are untouched (held in bf16 during training, so equal to the bf16-rounded base)
    for key, value in frozen.items():
        name = key.removeprefix("base_model.model.").replace(".base_layer", "")
        if name == "lm_head.weight" and name not in base:  # tied to the embedding
            continue
        torch.testing.assert_close(value.float(), base[name].to(torch.bfloat16).float(), atol=0, rtol=0)


def test_merged_export_equals_base_plus_adapter(zero3_lora, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    cfg, summary = zero3_lora
    merged_dir, adapter_dir = summary["model"], str(tmp_path / "adapter")
    info = export_model(summary["checkpoint"], cfg, resolve_model(cfg.model.name), adapter_dir, merge=False)
    assert info["lora"] and not info["merged"] and Path(adapter_dir, "adapter_config.json").exists()
    base_path = resolve_model("pkg:smollm2-135m-instruct")
    base = load_file(str(Path(base_path, "model.safetensors")))
    merged = load_file(str(Path(merged_dir, "model.safetensors")))
    adapter = load_file(str(Path(adapter_dir, "adapter_model.safetensors")))
    scale = cfg.lora.alpha / cfg.lora.rank
    for layer in (0, 17, 29):
        for proj in ("q_proj", "v_proj"):
            key = f"model.layers.{layer}.self_attn.{proj}"
            a = adapter[f"base_model.model.{key}.lora_A.weight"]
            b = adapter[f"base_model.model.{key}.lora_B.weight"]
            torch.testing.assert_close(merged[f"{key}.weight"], base[f"{key}.weight"] + scale * b @ a)
    untouched = "model.layers.3.mlp.down_proj.weight"
    assert torch.equal(merged[untouched], base[untouched])
    # and the adapter folder, applied by PEFT, predicts what the merged folder predicts
    ids = torch.tensor([[1, 504, 3458, 282, 4649, 314]])
    with torch.no_grad():
        from_merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()(ids).logits
        peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), adapter_dir).eval()
        from_adapter = peft(ids).logits
    torch.testing.assert_close(from_merged, from_adapter, atol=1e-4, rtol=1e-4)
