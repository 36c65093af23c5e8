"""LLM-as-judge reward on a real small model (SmolLM2-135M-Instruct, from its PyPI package).

The judge's probability-weighted score is checked against the same number computed independently from a
plain transformers forward pass (full softmax over the prompt, and over prompt + "1" for the split "10"),
which proves the label trie, the KV-cache extension step, left padding and position ids.
"""

import numpy as np
import pytest

from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.reward.config import RewardSpec
from crowdselect.reward.judge import JudgeScorer
from crowdselect.runtime.resources import PoolResources

pytestmark = pytest.mark.slow
SMOL = "pkg:smollm2-135m-instruct"


def judge_spec(**kw):
    return RewardSpec(name="smol-judge", model=SMOL, kind="judge", max_length=384,
                      resources=PoolResources(batch_size=4), **kw)


@pytest.fixture(scope="module")
def judge():
    return JudgeScorer(judge_spec(), mass_column="mass")


@pytest.fixture(scope="module")
def judged(judge):
    return judge(dict(BATCH))


BATCH = {
    C.ID: ["a", "b", "c", "d"],
    C.INSTRUCTION: ["What is 2+2?", "Name a primary colour.", "Write a haiku about rain.", "Say hi."],
    C.RESPONSE: ["2+2 equals 4.", "asdf qwerty", "Rain taps on the roof\nthe gutters hum a low tune\nnight "
                 "keeps the rhythm", None],
}


def test_smollm2_splits_ten_into_two_tokens(judge):
    tok = judge.lm.tokenizer
    assert judge.trie.labels[9] == (tok.convert_tokens_to_ids("1"), tok.convert_tokens_to_ids("0"))
    assert all(len(seq) == 1 for seq in judge.trie.labels[:9])
    assert judge.trie.steps() == [(), (tok.convert_tokens_to_ids("1"),)]


def test_scores_in_range_errors_kept(judged):
    out = judged
    s = out[C.REWARD]
    assert ((s[:3] >= 1) & (s[:3] <= 10)).all() and np.isnan(s[3])
    assert list(out[C.REWARD_ERROR]) == [None, None, None, "no response"]
    assert list(out[C.REWARD_MODEL]) == ["smol-judge"] * 4
    assert ((out["mass"][:3] > 0.5) & (out["mass"][:3] <= 1.0 + 1e-9)).all()  # the judge does answer digits


def test_score_matches_an_independent_forward_pass(judge, judged):
    import torch

    tok, model = judge.lm.tokenizer, judge.lm.model
    out = judged  # rows of different lengths, scored together with left padding
    one = tok.convert_tokens_to_ids("1")
    zero = tok.convert_tokens_to_ids("0")
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(1, 10)]
    for i in (0, 2):  # the shortest (most left padding) and the longest row of the batch
        ids = judge._encode_row(BATCH, i)
        with torch.no_grad():
            p1 = torch.softmax(model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].double(), -1)
            p2 = torch.softmax(model(torch.tensor([ids + [one]]), logits_to_keep=1).logits[0, -1].double(), -1)
        probs = [p1[d].item() for d in digits]
        ten = probs[0] * p2[zero].item()
        probs[0] *= 1 - p2[zero].item()
        probs.append(ten)
        expected = sum((k + 1) * p for k, p in enumerate(probs)) / sum(probs)
        assert out[C.REWARD][i] == pytest.approx(expected, abs=2e-4)
        assert out["mass"][i] == pytest.approx(sum(probs), abs=2e-4)


def test_too_long_rows_are_recorded_or_truncated(judge):
    strict = JudgeScorer(judge_spec(truncation="error"))
    long_row = {C.INSTRUCTION: ["Explain. " + "word " * 400], C.RESPONSE: ["ok " * 400]}
    out = strict(dict(long_row))
    assert np.isnan(out[C.REWARD][0]) and out[C.REWARD_ERROR][0].startswith("too long")
    enc = judge._encode_row(long_row, 0)  # the default policy (head_tail) truncates instead
    assert len(enc) <= 384 - 1 and judge.lm.tokenizer.decode(enc).endswith("Rating: [[")


def test_bad_prompt_templates():
    with pytest.raises(ConfigError, match=r"lacks \{response\}"):
        JudgeScorer(judge_spec(judge_prompt="Rate this: {instruction}"))
    with pytest.raises(ConfigError, match=r"field \{0\} is not a name"):
        JudgeScorer(judge_spec(judge_prompt="{instruction} {response} {0}"))
    # per-row templates: a bad one fails its row only (a judge of its own: the shared fixture stays as it is)
    per_row = JudgeScorer(judge_spec(), prompt_column="tpl")
    out = per_row({C.INSTRUCTION: ["Q", "Q"], C.RESPONSE: ["A", "A"],
                   "tpl": ["Q: {instruction} A: {response} Rate 1-10.", "{instruction} {response} {missing}"]})
    assert np.isfinite(out[C.REWARD][0]) and np.isnan(out[C.REWARD][1])
    assert out[C.REWARD_ERROR][1] == "prompt template field {missing} is not a column of the batch"


def test_vllm_judge_agrees_with_hf(judge, judged):
    pytest.importorskip("vllm")
    spec = judge_spec(backend="vllm", dtype="float32",
                      engine_kwargs={"enforce_eager": True, "max_num_seqs": 8, "enable_prefix_caching": True})
    vjudge = JudgeScorer(spec)
    batch = {k: v[:3] for k, v in BATCH.items()}
    prompt = judge.lm.tokenizer.apply_chat_template([{"role": "user", "content": "Name a primary colour."}],
                                                    add_generation_prompt=True, tokenize=False)
    ids = judge.lm.tokenizer.encode(prompt, add_special_tokens=False)
    try:
        got = vjudge(dict(batch))[C.REWARD]
        v_text = vjudge.lm.generate([ids], max_new_tokens=8)  # the generation path used by Tags and eval
    finally:
        vjudge.lm.close()
    want = judged[C.REWARD][:3]
    assert v_text == judge.lm.generate([ids], max_new_tokens=8)  # greedy, fp32 on both
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=0.05)  # top-20 logprobs hold all the digit mass here
