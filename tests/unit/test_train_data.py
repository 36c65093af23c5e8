"""Training data: row formats, bad rows, loss masking with the student's chat template, packing, plan.

Fast: no Ray, no DeepSpeed, no model. The tests that need the student's tokenizer or weights (loss masking,
truncation, packing isolation, preparation) are in tests/stage/test_train_tokenize.py.
"""

import json
import re

import pytest

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import BadRecord
from crowdselect.train.config import TrainConfig, deepspeed_config, load_train_config
from crowdselect.train.data import read_conversations, to_messages
from crowdselect.train.loop import TrainerState, checkpoint_due
from crowdselect.train.prepare import plan_steps
from crowdselect.train.telemetry import flops_per_token
from crowdselect.train.tokenize import IGNORE, collate, pack, pad_to_multiple


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


# ---- row formats -------------------------------------------------------------------------------------------

def test_formats_become_messages():
    want = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert to_messages({C.MESSAGES: want, "id": "x", "score": 0.3}) == want
    assert to_messages({"instruction": "Q", "output": "A"}) == want
    assert to_messages({"instruction": "Q", "response": "A", "reward": 1.0}) == want  # crowd / selected row
    assert to_messages({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}) == want
    assert to_messages({"instruction": "Q", "input": "ctx", "output": "A"})[0]["content"] == "Q\n\nctx"
    with_system = to_messages({"instruction": "Q", "output": "A"}, system_prompt="Be brief.")
    assert with_system[0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("row, reason", [
    ({C.MESSAGES: [{"role": "user", "content": "Q"}]}, "no assistant turn"),
    ({C.MESSAGES: [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "  "}]},
     "message 2 (assistant): empty text"),
    ({C.MESSAGES: [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "\u200b \ufeff\u2060"}]},
     "message 2 (assistant): empty text"),  # invisible characters only: blank, as in every reader
    ({C.MESSAGES: [{"role": "robot", "content": "Q"}]}, "unknown role 'robot'"),
    ({"instruction": "Q"}, "no 'output'"),
    ({"conversations": [{"from": "alien", "value": "Q"}]}, "unknown speaker 'alien'"),
    ({"text": "Q"}, "no 'messages', 'conversations' or 'instruction'"),
])
def test_bad_rows_have_reasons(row, reason):
    with pytest.raises(BadRecord, match=re.escape(reason)):
        to_messages(row)


def test_read_names_file_and_line(tmp_path):
    good = {"instruction": "Q", "output": "A"}
    path = write_jsonl(tmp_path / "d.jsonl", [good, "{not json", good, {"instruction": "Q", "output": ""}])
    convs, bad = read_conversations([path])
    assert [c.source for c in convs] == [f"{path}:1", f"{path}:3"]
    assert [(b.source, b.reason) for b in bad] == [(f"{path}:2", "not valid JSON (Expecting property name enclosed in "
                                                                "double quotes at column 2)"),
                                                  (f"{path}:4", "message 2 (assistant): empty text")]


def test_folder_of_json_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"instruction": "Q1", "output": "A1"}])
    (folder / "b.json").write_text(json.dumps([{"instruction": "Q2", "output": "A2"}, ["not", "a", "row"]]))
    pq.write_table(pa.Table.from_pylist([{"instruction": "Q3", "output": "A3"}]), folder / "c.parquet")
    (folder / "notes.txt").write_text("ignored: not a data file")
    convs, bad = read_conversations([str(folder)])
    assert [c.messages[0]["content"] for c in convs] == ["Q1", "Q2", "Q3"]
    assert [c.source for c in convs] == [f"{folder}/a.jsonl:1", f"{folder}/b.json:1", f"{folder}/c.parquet:1"]
    assert [(b.source, b.reason) for b in bad] == [(f"{folder}/b.json:2", "not a JSON object")]
    assert len(read_conversations([str(folder / "*.jsonl")])[0]) == 1
    with pytest.raises(UserError, match="missing.jsonl: no such training data file or directory"):
        read_conversations([str(tmp_path / "missing.jsonl")])


# ---- loss masking ------------------------------------------------------------------------------------------


def test_pack_restarts_positions_and_keeps_labels():
    a = {C.INPUT_IDS: [1, 2, 3], C.LABELS: [IGNORE, 2, 3]}
    b = {C.INPUT_IDS: [4, 5], C.LABELS: [IGNORE, 5]}
    c = {C.INPUT_IDS: [6, 7, 8, 9], C.LABELS: [IGNORE, IGNORE, 8, 9]}
    packed = pack([a, b, c], max_length=5)
    assert [p[C.INPUT_IDS] for p in packed] == [[1, 2, 3, 4, 5], [6, 7, 8, 9]]
    assert packed[0][C.POSITION_IDS] == [0, 1, 2, 0, 1]
    assert packed[0][C.LABELS] == [IGNORE, 2, 3, IGNORE, 5]


def test_collate_pads_with_ignored_labels():
    batch = collate({C.INPUT_IDS: [[5, 6, 7], [8]], C.LABELS: [[IGNORE, 6, 7], [8]]}, pad_id=0)
    assert batch[C.INPUT_IDS].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch[C.LABELS].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pad_to_multiple_repeats_rows():
    rows, extra = pad_to_multiple([{"i": 0}, {"i": 1}, {"i": 2}], 4)
    assert extra == 1 and [r["i"] for r in rows] == [0, 1, 2, 0]


# ---- preparation, bad-row policy, plan ------------------------------------------------------------------------


def test_plan_counts_steps(tmp_path, train_cfg):
    cfg = train_cfg("x", scaling__workers=2, optim__grad_accum=2, optim__epochs=3)
    assert plan_steps(8, cfg) == {"micro_per_epoch": 4, "total_steps": 6, "steps": 6, "micro_batches_unused_at_end": 0}
    cfg.optim.max_steps = 2
    assert plan_steps(8, cfg)["steps"] == 2 and plan_steps(8, cfg)["total_steps"] == 6
    with pytest.raises(UserError, match="no optimizer step"):
        plan_steps(1, cfg)


def test_checkpoint_due():
    cfg = TrainConfig(out="x")
    cfg.checkpoint.every_steps = 3
    p = {"steps": 10, "micro_per_epoch": 8}
    due = [s for s in range(1, 11) if checkpoint_due(TrainerState(step=s, micro=2 * s, checkpoint_micro=2 * s - 2),
                                                       cfg, p)]
    assert due == [3, 4, 6, 8, 9, 10]  # every 3, epoch ends (micro 8, 16), and the last step


# ---- config --------------------------------------------------------------------------------------------------

def test_config_defaults_are_the_papers(tmp_path):
    cfg = load_train_config(None, str(tmp_path), ["data.path=sel.jsonl"])
    o = cfg.optim
    assert (o.lr, o.epochs, o.per_device_batch, o.grad_accum, o.warmup_steps) == (1e-5, 3, 1, 2, 150)
    assert cfg.data.max_length == 2048 and cfg.data.path == ["sel.jsonl"]


def test_config_errors_name_file_and_key(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("data:\n  path: x.jsonl\noptim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=rf"{f}: optim.lr: expected a number"):
        load_train_config(str(f), str(tmp_path))
    with pytest.raises(ConfigError, match="deepspeed.zero_stage: must be one of 1, 2, 3"):
        load_train_config(None, str(tmp_path), ["data.path=x", "deepspeed.zero_stage=4"])
    with pytest.raises(ConfigError, match="fp16 needs scaling.use_gpu"):
        load_train_config(None, str(tmp_path), ["data.path=x", "deepspeed.precision=fp16"])


def test_deepspeed_config_passthrough(tmp_path):
    cfg = load_train_config(None, str(tmp_path), ["data.path=x", "deepspeed.zero_stage=3",
                                                  "optim.grad_accum=4"])
    cfg.deepspeed.config = {"zero_optimization": {"reduce_bucket_size": 1000}, "wall_clock_breakdown": True}
    ds = deepspeed_config(cfg, world_size=2)
    assert ds["train_batch_size"] == 1 * 4 * 2 and ds["gradient_accumulation_steps"] == 4
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["reduce_bucket_size"] == 1000
    assert ds["wall_clock_breakdown"] is True and ds["bf16"]["enabled"] is True


@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("use_gpu", [False, True])
def test_zero_overlaps_communication_on_gpus_only(tmp_path, stage, use_gpu):
    """overlap_comm on GPU workers for every ZeRO stage; off on CPU (gloo), where DeepSpeed has no streams to
    overlap on. DeepSpeed's own ZeRO config model accepts the section as generated."""
    from deepspeed.runtime.zero.config import DeepSpeedZeroConfig

    cfg = load_train_config(None, str(tmp_path), ["data.path=x", f"deepspeed.zero_stage={stage}",
                                                  f"scaling.use_gpu={str(use_gpu).lower()}"])
    zero = deepspeed_config(cfg, world_size=2)["zero_optimization"]
    assert zero["overlap_comm"] is use_gpu
    assert DeepSpeedZeroConfig(**zero).overlap_comm is use_gpu
    cfg.deepspeed.config = {"zero_optimization": {"overlap_comm": False}}  # the user's config still wins
    assert deepspeed_config(cfg, world_size=2)["zero_optimization"]["overlap_comm"] is False


def test_flops_per_token():
    assert flops_per_token(100, 2, 4, 8.0, lora=False) == 6 * 100 + 12 * 2 * 4 * 8
    assert flops_per_token(100, 2, 4, 8.0, lora=True) == 4 * 100 + 12 * 2 * 4 * 8


@pytest.mark.parametrize("module", ["crowdselect.train.data", "crowdselect.train.telemetry"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_tracking_backend_must_be_installed(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match="tracking.backend: wandb is not installed"):
        load_train_config(None, str(tmp_path), ["data.path=x", "tracking.backend=wandb"])
