"""Sequence-classification reward stage on real weights, directly and through Ray Data's actor pool.

The reward model is built honestly from a shipped model: SmolLM2-135M-Instruct's transformer with a fresh
one-output classification head (AutoModelForSequenceClassification, num_labels=1, seeded), saved as a
folder once per session (`reward_model_dir`, tests/stage/conftest.py). Its scores mean nothing; the tests
prove the wiring (chat template, padding, last-token pooling, per-row errors, Ray actor pool) and the
truncation policies on real weights and a real tokenizer.
"""

import numpy as np
import pytest

from crowdselect.core import columns as C
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.wiring import add_rewards, build_scorer
from crowdselect.runtime.resources import PoolResources

pytestmark = pytest.mark.slow


def spec_of(path, **kw):
    return RewardSpec(**{"name": "tiny-rm", "model": path, "kind": "classifier", "max_length": 96,
                         "resources": PoolResources(batch_size=4), **kw})


@pytest.fixture(scope="module")
def scorer(reward_model_dir):
    return build_scorer(spec_of(reward_model_dir))


ROWS = {
    C.ID: ["a", "b", "c", "d", "e"],
    C.INSTRUCTION: ["What is 2+2?", "Name a colour.", "Write a haiku about rain.", "Say hi.", None],
    C.RESPONSE: ["2+2 equals 4.", "Blue.", "Soft rain on the roof\nthe gutters hum a low tune\nnight keeps the "
                 "rhythm", None, "orphan answer"],
    C.MODEL: ["m1", "m1", "m2", "m2", "m1"],
}


def test_scores_errors_and_lineage(scorer):
    out = scorer(dict(ROWS))
    r = out[C.REWARD]
    assert np.isfinite(r[:3]).all() and np.isnan(r[3:]).all()
    assert list(out[C.REWARD_ERROR]) == [None, None, None, "no response", "no instruction"]
    assert list(out[C.REWARD_MODEL]) == ["tiny-rm"] * 5
    assert list(out[C.MODEL]) == ROWS[C.MODEL]  # other columns pass through
    # padding and last-token pooling: a row scores the same alone as in a padded batch
    for i in range(3):
        alone = scorer({k: [v[i]] for k, v in ROWS.items()})[C.REWARD][0]
        assert alone == pytest.approx(r[i], abs=1e-4)
    assert len(set(np.round(r[:3], 5))) == 3


def test_chat_template_is_the_models(scorer):
    ids = scorer.encode("Q?", "A.")
    text = scorer.tokenizer.decode(ids)
    assert text == scorer.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}], tokenize=False)


def test_head_tail_truncation_keeps_instruction_head_and_response_tail(scorer):
    instruction = "START of the task. " + "pad " * 300
    response = "filler " * 300 + "FINAL ANSWER"
    ids = scorer.encode(instruction, response)
    assert len(ids) <= 96
    text = scorer.tokenizer.decode(ids)
    assert "START of the task" in text and "FINAL ANSWER<|im_end|>" in text
    assert text.startswith("<|im_start|>system")  # the template is never cut
    out = scorer({C.INSTRUCTION: [instruction], C.RESPONSE: [response]})
    assert np.isfinite(out[C.REWARD][0]) and out[C.REWARD_ERROR][0] is None


def test_left_and_error_policies(reward_model_dir):
    long_pair = {C.INSTRUCTION: ["START " + "pad " * 300], C.RESPONSE: ["short answer " * 40 + "END"]}
    left = build_scorer(spec_of(reward_model_dir, truncation="left"))
    ids = left.encode(long_pair[C.INSTRUCTION][0], long_pair[C.RESPONSE][0])
    assert len(ids) == 96 and "START" not in left.tokenizer.decode(ids)
    strict = build_scorer(spec_of(reward_model_dir, truncation="error"))
    out = strict(dict(long_pair))
    assert np.isnan(out[C.REWARD][0]) and out[C.REWARD_ERROR][0].startswith("too long:")


def test_reward_stage_on_ray_actor_pool(ray_local, reward_model_dir, scorer):
    import ray

    rows = [{k: v[i] for k, v in ROWS.items()} for i in range(5)]
    spec = spec_of(reward_model_dir, resources=PoolResources(batch_size=4, concurrency=1))
    ds = add_rewards(ray.data.from_items(rows), spec)
    got = {r[C.ID]: r for r in ds.take_all()}
    assert sorted(got) == ROWS[C.ID]  # every row back, none duplicated
    direct = scorer(dict(ROWS))
    for i, rid in enumerate(ROWS[C.ID]):
        want = direct[C.REWARD][i]
        if np.isnan(want):
            assert np.isnan(got[rid][C.REWARD]) and got[rid][C.REWARD_ERROR] == direct[C.REWARD_ERROR][i]
        else:
            assert got[rid][C.REWARD] == pytest.approx(want, abs=1e-4)
            assert got[rid][C.REWARD_MODEL] == "tiny-rm"


# A Llama-3.1-style template: the assistant turn ends with EOS itself (Llama's <|eot_id|>, here <|im_end|>)
# and nothing after it, so a pad token equal to EOS would hide each sequence's last token from the head.
ENDS_WITH_EOS = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def rm_without_pad(reward_model_dir, tmp_path_factory):
    """The same reward model with no pad token anywhere: not in its tokenizer, not in its config."""
    import json
    import shutil

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("rm_nopad")
    shutil.copytree(reward_model_dir, out, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(reward_model_dir)
    tok.pad_token = None
    tok.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config["pad_token_id"] = None
    (out / "config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(out).pad_token is None
    return str(out)


def last_token_score(path: str, ids: list[int]) -> float:
    """Independently of any padding rule: the score head on the hidden state of the sequence's last token."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.inference_mode():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        return float(model.score(hidden)[0])


@pytest.mark.parametrize("which", ["pad is EOS", "no pad token"])
def test_score_is_read_at_the_last_token_when_pad_is_eos_or_missing(which, reward_model_dir, rm_without_pad):
    path = reward_model_dir if which == "pad is EOS" else rm_without_pad
    scorer = build_scorer(spec_of(path, chat_template=ENDS_WITH_EOS))
    eos = scorer.tokenizer.eos_token_id
    rows = {C.INSTRUCTION: ROWS[C.INSTRUCTION][:3], C.RESPONSE: ROWS[C.RESPONSE][:3]}
    seqs = [scorer.encode(i, r) for i, r in zip(rows[C.INSTRUCTION], rows[C.RESPONSE], strict=True)]
    assert all(s[-1] == eos for s in seqs)  # the case: every sequence ends with EOS
    assert scorer.pad != eos and scorer.model.config.pad_token_id == scorer.pad
    out = scorer(dict(rows))
    assert out[C.REWARD_ERROR].tolist() == [None, None, None]
    for s, got in zip(seqs, out[C.REWARD], strict=True):
        assert got == pytest.approx(last_token_score(path, s), abs=1e-4)


def test_a_stage_given_a_gpu_uses_it_or_says_why_not(reward_model_dir):
    """The actor's GPU share decides the device: given one on a machine where torch sees none, it refuses
    instead of quietly running on CPU (and given 0 it never asks CUDA: tests/unit/test_lm.py)."""
    import torch

    from crowdselect.core.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="given 1 GPU.*sees no CUDA device"):
        build_scorer(spec_of(reward_model_dir, resources=PoolResources(batch_size=4, num_gpus=1)))
