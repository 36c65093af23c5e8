"""Model-based baselines on a real small model (SmolLM2-135M-Instruct): IFD, Direct-score, Tags.

IFD is checked against perplexities computed independently with transformers' own loss (labels with -100
on the prompt); the Tags stage runs once through Ray Data's actor pool to prove its list column survives.
"""

import math

import numpy as np
import pytest

from crowdselect.baselines.config import BaselinesConfig, add_baseline
from crowdselect.baselines.direct_score import DirectScorer
from crowdselect.baselines.ifd import IFDScorer
from crowdselect.baselines.tags import Tagger
from crowdselect.core import columns as C
from crowdselect.core.config import ConfigError
from crowdselect.reward.config import RewardSpec
from crowdselect.runtime.resources import PoolResources

pytestmark = pytest.mark.slow
SMOL = "pkg:smollm2-135m-instruct"

ROWS = {
    C.ID: ["a", "b", "c"],
    C.INSTRUCTION: ["What is 2+2? Answer with a sentence.", "Write a haiku about rain.", None],
    C.BEST_RESPONSE: ["2+2 equals 4.", "Rain taps on the roof\nthe gutters hum a low tune\nnight keeps the rhythm",
                      "orphan"],
}


def spec(**kw):
    return RewardSpec(**{"name": "smol", "model": SMOL, "kind": "judge", "max_length": 256,
                         "resources": PoolResources(batch_size=4), **kw})


def test_ifd_equals_ratio_of_perplexities():
    import torch

    scorer = IFDScorer(spec())
    out = scorer(dict(ROWS))
    assert list(out[C.error_column(C.IFD)]) == [None, None, "no instruction"]
    assert np.isnan(out[C.IFD][2])
    tok, model = scorer.tok, scorer.lm.model

    def ppl(prompt_ids, response_ids):
        ids = torch.tensor([prompt_ids + response_ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + response_ids])
        with torch.no_grad():
            return math.exp(model(input_ids=ids, labels=labels).loss.item())

    for i in range(2):
        chat = [{"role": "user", "content": ROWS[C.INSTRUCTION][i]}]
        empty = [{"role": "user", "content": ""}]
        cond = tok.encode(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False)
        direct = tok.encode(tok.apply_chat_template(empty, tokenize=False, add_generation_prompt=True),
                            add_special_tokens=False)
        resp = tok.encode(ROWS[C.BEST_RESPONSE][i], add_special_tokens=False)
        expected = ppl(cond, resp) / ppl(direct, resp)
        assert out[C.IFD][i] == pytest.approx(expected, rel=1e-3)
    # the instruction helps predict the answer to "2+2": IFD below 1
    assert 0 < out[C.IFD][0] < 1


def test_ifd_truncation_keeps_response_within_max_length():
    scorer = IFDScorer(spec(max_length=64))
    prompt, direct, resp = scorer.encode("Explain. " + "word " * 200, "answer " * 200)
    assert len(prompt) + len(resp) <= 64 and len(direct) + len(resp) <= 64 and len(resp) > 0


def test_direct_score_is_a_0_to_5_rating():
    scorer = DirectScorer(spec())
    assert scorer.trie.values == (0, 1, 2, 3, 4, 5)
    out = scorer(dict(ROWS))
    s = out[C.DIRECT_SCORE]
    assert ((s[:2] >= 0) & (s[:2] <= 5)).all() and np.isnan(s[2])
    assert out[C.error_column(C.DIRECT_SCORE)][2] == "no instruction"
    assert C.REWARD_MODEL not in out


@pytest.fixture(scope="module")
def reference_tags():
    """What the Tags stage must give rows a and b, computed without it: each instruction alone (no batch, no
    padding) in the TAGS_PROMPT chat template + "Tags:", greedy `model.generate` of plain transformers, its
    new text parsed by `parse_tags` (whose rules tests/unit/test_reward_math.py and its doctests check)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crowdselect.baselines.tags import parse_tags
    from crowdselect.reward.prompts import TAGS_PREFIX, TAGS_PROMPT
    from crowdselect.runtime.models import resolve_model

    path = resolve_model(SMOL)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def expected(instruction: str, max_new_tokens: int) -> tuple[list[str], str]:
        chat = [{"role": "user", "content": TAGS_PROMPT.format(instruction=instruction)}]
        text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + TAGS_PREFIX
        ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return parse_tags(answer), answer

    return expected


def test_tags_through_ray_actor_pool(ray_local, reference_tags):
    import ray

    cfg = BaselinesConfig(tags=spec(max_new_tokens=16))
    rows = [{k: v[i] for k, v in ROWS.items()} for i in range(3)]
    got = {r[C.ID]: r for r in add_baseline(ray.data.from_items(rows), "tags", cfg).take_all()}
    assert sorted(got) == ["a", "b", "c"]
    for i, rid in enumerate(("a", "b")):
        want, answer = reference_tags(ROWS[C.INSTRUCTION][i], 16)
        tags, err = list(got[rid][C.TAGS]), got[rid][C.error_column(C.TAGS)]
        assert tags == want, f"row {rid}: the judge answered {answer!r}"
        # an answer with no usable tag is recorded with the answer quoted, never dropped
        assert err == (None if want else f"no usable tag in the judge's answer {answer[:80]!r}")
    assert list(got["c"][C.TAGS]) == [] and got["c"][C.error_column(C.TAGS)] == "no instruction"


def test_tagger_directly_matches_an_independent_generation(reference_tags):
    tagger = Tagger(spec(max_new_tokens=10))
    instruction = "Write a Python function that sorts a list."
    out = tagger({C.INSTRUCTION: [instruction]})
    want, answer = reference_tags(instruction, 10)
    assert want, f"the judge gave no usable tag: {answer!r}"  # the case under test is a tagged row
    assert list(out[C.TAGS][0]) == want and out[C.error_column(C.TAGS)][0] is None


def test_missing_baseline_model_is_a_config_error():
    with pytest.raises(ConfigError, match=r"baselines.ifd: the strategy needs a model"):
        add_baseline(None, "ifd", BaselinesConfig())
